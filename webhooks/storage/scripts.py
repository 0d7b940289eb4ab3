"""The Lua scripts, each one atomic step that would otherwise take several round trips.

Each lives in ``lua/NAME.lua`` with a header that names its inputs::

    -- KEYS: delivery_key attempts_key running_key
    -- ARGV: cycle retries now ...
    -- Uses: destination

The loader declares one Lua local per name (a trailing ``*name`` takes the rest
of the keys as a table) and puts the shared functions of each ``Uses:`` file
first. Python calls a script with two dicts, ``keys`` and ``args``, whose names
must be exactly the header's, so neither side counts positions. Scripts that
answer with several values return a flat list of names and values, read back
with :func:`fields`.

Keys and arguments that are the same for every call of a store (settings, key
templates, the keys of shared sets) can be given once, as ``constants``: they are
written into the loaded source as string literals, as Redis would have passed them,
and are no longer sent with each call (redis-py encoding them took about a tenth of a
pool process's CPU per delivery, and Redis makes a Lua string of each argument of each
call). A key given so is not declared to Redis: these scripts already reach keys they
read the names of, so they run on one Redis, not a cluster. A constant the scripts
only compute with can be given as a :class:`Number`, written as a Lua number: a
``tonumber`` of a string costs Redis about 1,000 instructions each time it runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import hiredis
import redis
from redis.exceptions import NoScriptError

__all__ = ["Number", "Script", "fields"]

_FOLDER = Path(__file__).with_name("lua")
_HEADER = re.compile(r"^-- (KEYS|ARGV|Uses): (.*)$", re.MULTILINE)


class Number(float):
    """A constant written into a script as a Lua number, not a string: for one the
    scripts only compute with. Never for one they hand a Redis command: Redis prints a
    Lua number again (``%.17g``, about 2,600 instructions), where a string goes as is."""

    def lua(self) -> str:
        if not math.isfinite(self):
            raise ValueError(f"not a Lua number literal: {self!r}")
        return repr(float(self))


@cache
def _parts(name: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str]:
    """(key names, argument names, the shared files' sources, the script's source) of
    ``lua/<name>.lua``."""
    text = (_FOLDER / f"{name}.lua").read_text()
    header = {kind: value.split() for kind, value in _HEADER.findall(text)}
    shared = tuple((_FOLDER / f"{used}.lua").read_text() for used in header.get("Uses", []))
    return tuple(header.get("KEYS", [])), tuple(header.get("ARGV", [])), shared, text


def _source(
    name: str, constants: Mapping[str, Any] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(the names of the keys and of the arguments a call passes, the whole source to
    load) of ``lua/<name>.lua``, with ``constants`` (keys or arguments) written into it."""
    key_names, arg_names, shared, text = _parts(name)
    fixed = dict(constants or {})
    if unknown := set(fixed) - set(key_names) - set(arg_names):  # nor a starred name
        raise TypeError(f"{name}.lua: no constant {sorted(unknown)}")
    keys = tuple(n for n in key_names if n not in fixed)
    passed = tuple(n for n in arg_names if n not in fixed)
    # The constants come first, for the shared functions to use too (as claim.lua's
    # destination_keys does the templates' parts); the call's keys and arguments after.
    constant = [
        *(
            f"local {n} = {v.lua() if isinstance(v, Number) else _literal(_encoded(v))}"
            for n, v in fixed.items()
        ),
        *(
            f"local {n}_head, {n}_tail = {_literal(parts[0])}, {_literal(parts[1])}"
            for n, v in fixed.items()
            if n.endswith("_template") and (parts := _template_parts(_encoded(v)))
        ),
    ]
    given = [_declare(keys, "KEYS"), _declare(passed, "ARGV")]
    return keys, passed, "\n".join([*constant, *shared, *given, text])


def _template_parts(template: bytes) -> tuple[bytes, bytes] | None:
    """What comes before and after the one ``%s`` of a key template
    (:func:`webhooks.storage.keys.template`), for a script to join a key with ``..``
    (``NAME_head .. id .. NAME_tail``): a third of what ``string.format`` costs Redis.
    None for a template with no ``%s``, or more than one."""
    parts: list[bytearray] = [bytearray()]
    at = 0
    while at < len(template):
        if template[at : at + 2] == b"%%":
            parts[-1] += b"%"
            at += 2
        elif template[at : at + 2] == b"%s":
            parts.append(bytearray())
            at += 2
        elif template[at : at + 1] == b"%":
            return None  # another conversion: string.format's alone
        else:
            parts[-1] += template[at : at + 1]
            at += 1
    return (bytes(parts[0]), bytes(parts[1])) if len(parts) == 2 else None


def _encoded(value: Any) -> bytes:
    """A value as redis-py sends it (its Encoder's rules)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"not a script argument: {value!r}")
    return (value if isinstance(value, str) else repr(value)).encode()


def _literal(value: bytes) -> str:
    """A Lua string literal of ``value``: printable ASCII as is, any other byte escaped."""
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in value)
        + '"'
    )


def _declare(names: Sequence[str], table: str) -> str:
    lines = []
    for position, name in enumerate(names, start=1):
        if name.startswith("*"):
            if position != len(names):
                raise ValueError(f"{table}: only the last name may take the rest ({name})")
            # A loop, not unpack(): Lua's unpack stops at 8,000 values, a batch may not.
            lines.append(
                f"local {name[1:]} = {{}} for i = {position}, #{table} do "
                f"{name[1:]}[i - {position - 1}] = {table}[i] end"
            )
        else:
            lines.append(f"local {name} = {table}[{position}]")
    return "\n".join(lines)


class _Order:
    """A header's names in order, for a call's dict of them: the values as a list."""

    def __init__(self, names: Sequence[str], what: str, script: str) -> None:
        self.names = names
        self.plain = tuple(name.lstrip("*") for name in names)
        # The last name may take the rest (``*name``): its value is a list, spread.
        self.rest = bool(names) and names[-1].startswith("*")
        self.what, self.script = what, script

    def __call__(self, given: Mapping[str, Any]) -> list[Any]:
        if len(given) == len(self.plain):
            try:
                ordered = [given[name] for name in self.plain]
            except KeyError:
                pass  # named below
            else:
                if self.rest:
                    ordered[-1:] = ordered[-1]
                return ordered
        missing, extra = set(self.plain) - set(given), set(given) - set(self.plain)
        raise TypeError(
            f"{self.script}.lua {self.what}: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )


class Script:
    """One script of ``lua/``, registered on a client: called with named keys and args."""

    def __init__(
        self, client: redis.Redis, name: str, constants: Mapping[str, Any] | None = None
    ) -> None:
        self.name = name
        self.key_names, self.arg_names, source = _source(name, constants)
        self._client = client
        self._script = client.register_script(source)
        self._keys = _Order(self.key_names, "KEYS", name)
        self._args = _Order(self.arg_names, "ARGV", name)

    def __call__(
        self,
        keys: Mapping[str, Any],
        args: Mapping[str, Any],
        client: redis.Redis | redis.client.Pipeline | None = None,
    ) -> Any:
        ordered, argv = self._keys(keys), self._args(args)
        if isinstance(client, redis.client.Pipeline):
            return self._script(keys=ordered, args=argv, client=client)
        target = self._client if client is None else client
        command = ("EVALSHA", self._script.sha, len(ordered), *ordered, *argv)
        try:
            return _send(target, command)
        except NoScriptError:
            # A Redis that restarted or failed over has lost its scripts: loaded again.
            return self._script(keys=ordered, args=argv, client=target)


def _send(client: redis.Redis, command: tuple[Any, ...]) -> Any:
    """``command``'s reply, sent on one of the client's pooled connections, packed by
    hiredis in one call. redis-py's own path encodes each argument in Python and goes
    through its retry and observability wrappers: with 58 arguments, 94-103 µs of CPU a
    call, against 53-69 µs this way (a run makes one or two). What it does that matters
    is kept: a connection that failed is dropped, not pooled again, and a failure to
    reach Redis goes on through redis-py's path (``execute_command``), which retries it
    as the client's policy says."""
    packed = hiredis.pack_command(command)
    pool = client.connection_pool
    # (redis-py's stubs leave the connection's methods untyped.)
    connection: Any = pool.get_connection()
    try:
        connection.send_packed_command([packed])
        return connection.read_response()
    except redis.ResponseError:
        raise  # an error reply: the connection is in step
    except BaseException as error:
        connection.disconnect()  # perhaps half read: never pooled again as it is
        if not isinstance(error, redis.ConnectionError | redis.TimeoutError):
            raise
    finally:
        pool.release(connection)
    # redis-py's stubs leave execute_command untyped; it answers what Lua returns.
    run: Any = client.execute_command
    return run(*command)


def fields(reply: Sequence[Any]) -> dict[str, Any]:
    """A script's flat ``name, value, ...`` reply as a dict: each value bytes, or, for a
    part that is itself a list of named fields (a claim within a record's reply), that
    list, read with this again."""
    return {name.decode(): value for name, value in zip(reply[::2], reply[1::2], strict=True)}
