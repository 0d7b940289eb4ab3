"""What one first-try delivery costs Redis, in instructions: a figure the machine's
noise does not move.

    python -m bench.instructions [--count 300]

Redis CPU per delivery (``python -m bench.capacity``) moves by a tenth or more from
one run to the next on this shared machine, so a change worth a few per cent cannot
be seen in it. This counts instructions instead. A first-try workload as
bench.capacity's (a worker started with the Procfile's command, ``deliver_many`` of
``count`` 1 KB events to a receiver on loopback answering 200) runs on a Redis of
its own while ``MONITOR`` records every command a client sent (not those inside
scripts: the scripts run them again). The record is then replayed, one command at a
time in the same order, into a fresh redis-server run under valgrind's callgrind,
and once more with nothing, for what starting and stopping costs; the difference,
divided by ``count``, is what a delivery cost Redis in user space (not the kernel's
share of its reads and writes). The replay is deterministic: two replays of one
record agree within about 0.3 %, two records of the same workload within about
0.5 % (the worker's timing moves which commands it sends a little).

Needs ``valgrind`` (Debian's package). Blocking pops replay as plain pops.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis

import webhooks
from bench.capacity import workload
from webhooks.dev.redis_server import RedisProcess, installed_server

__all__ = ["capture", "main", "parse_monitor_line", "replay"]

_LINE = re.compile(r"^\+?\S+ \[(\d+) ([^\]]+)\] (.*)$")
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}
# What a replay leaves out: connection and monitoring commands, and MULTI/EXEC, whose
# commands replay one by one in the same order anyway.
_LEFT_OUT = {
    b"MONITOR", b"PSUBSCRIBE", b"PUNSUBSCRIBE", b"SUBSCRIBE", b"UNSUBSCRIBE", b"PUBLISH",
    b"INFO", b"CLIENT", b"HELLO", b"CONFIG", b"SLOWLOG", b"PING", b"SELECT", b"MULTI",
    b"EXEC", b"QUIT", b"RESET",
}  # fmt: skip
_BLOCKING = {b"BRPOP": "RPOP", b"BLPOP": "LPOP"}


def parse_monitor_line(line: str) -> tuple[str, list[bytes]] | None:
    """(who sent it: an address, or 'lua' for a script's own command, its arguments) of
    one line of ``MONITOR``'s output; None for a line that is not a command."""
    match = _LINE.match(line)
    if match is None:
        return None
    _, who, rest = match.groups()
    args: list[bytes] = []
    at = 0
    while at < len(rest):
        if rest[at] == " ":
            at += 1
            continue
        if rest[at] != '"':
            raise ValueError(f"not a quoted argument at {at}: {rest[at : at + 20]!r}")
        at += 1
        value = bytearray()
        while rest[at] != '"':
            if rest[at] == "\\":
                if rest[at + 1] == "x":
                    value.append(int(rest[at + 2 : at + 4], 16))
                    at += 4
                else:
                    value += _ESCAPES[rest[at + 1]]
                    at += 2
            else:
                value += rest[at].encode("latin-1")
                at += 1
        at += 1
        args.append(bytes(value))
    return who, args


@contextmanager
def _monitoring(host: str, port: int, into: list[list[bytes]]) -> Iterator[None]:
    """Record the commands clients send to the Redis at ``host:port`` until the block
    ends."""
    sock = socket.create_connection((host, port))
    sock.sendall(b"MONITOR\r\n")
    # Redis records other clients' commands only once it has answered MONITOR: a
    # command sent before then, on another connection, would be missed.
    sock.settimeout(10)
    answered = b""
    while b"\r\n" not in answered:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("Redis closed the connection before answering MONITOR")
        answered += chunk
    reply, first = answered.split(b"\r\n", 1)
    if reply != b"+OK":
        raise ConnectionError(f"MONITOR was answered {reply!r}")
    stopped = threading.Event()
    lines: list[str] = []

    def read() -> None:
        buffer = first
        sock.settimeout(0.2)
        while not stopped.is_set() or buffer:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                if stopped.is_set():
                    break
                continue
            if not chunk:
                break
            buffer += chunk
            *whole, buffer = buffer.split(b"\r\n")
            lines.extend(line.decode("latin-1") for line in whole)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield
    finally:
        time.sleep(0.3)  # the last commands' lines on their way
        stopped.set()
        reader.join(timeout=10)
        sock.close()
        for line in lines:
            parsed = parse_monitor_line(line)
            if (
                parsed is not None
                and parsed[0] != "lua"
                and parsed[1]
                and parsed[1][0].upper() not in _LEFT_OUT
            ):
                into.append(parsed[1])


def capture(count: int) -> list[list[bytes]]:
    """The commands clients sent Redis while a worker delivered ``count`` deliveries,
    each answered 200 at the first try (bench.capacity's first turn, its setup)."""
    commands: list[list[bytes]] = []
    with workload() as (client, receiver):
        from bench.scenarios import one_kb_event
        from webhooks import deliver_many

        pool = client.connection_pool.connection_kwargs
        with _monitoring(pool["host"], pool["port"], commands):
            deliver_many(
                [(receiver.url("/ok/instructions"), one_kb_event(n)) for n in range(count)]
            )
            deadline = time.monotonic() + 120
            while client.zcard("webhooks:deliveries:delivered") < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the deliveries were not all delivered in 120 s")
                time.sleep(0.05)
    return commands


def replay(commands: Sequence[Sequence[bytes]], binary: str) -> dict[str, Any]:
    """Instructions a fresh ``binary`` (redis-server, no persistence) under callgrind ran
    to start, run ``commands`` one at a time, and stop; with how many calls each script
    had."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    scripts: dict[str, str] = {}
    calls: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        with RedisProcess(
            Path(tmp),
            "--appendonly",
            "no",
            binary=binary,
            wrapper=(valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"),
            ready_within=120,
        ) as server:
            client = redis.Redis.from_url(server.url, socket_timeout=60)
            for args in commands:
                name = args[0].upper()
                if name in _BLOCKING:
                    for key in args[1:-1]:
                        if client.execute_command(_BLOCKING[name], key) is not None:
                            break
                    continue
                if name == b"SCRIPT" and args[1].upper() == b"LOAD":
                    scripts[client.script_load(args[2])] = _script_name(args[2])
                    continue
                if name == b"EVALSHA":
                    calls[scripts.get(args[1].decode(), "(not loaded)")] += 1
                # An error answers as it did then (a NOSCRIPT before its SCRIPT LOAD).
                with suppress(redis.ResponseError):
                    client.execute_command(*args)
            client.close()
        # Stopped (SIGTERM: Redis shuts down cleanly), callgrind has written its count.
        total = next(
            int(line.split()[1])
            for line in out.read_text().splitlines()
            if line.startswith(("summary:", "totals:"))
        )
    calls.pop("(not loaded)", None)
    return {"instructions": total, "script_calls": dict(calls)}


def _script_name(source: bytes) -> str:
    """The ``lua/NAME.lua`` a loaded source was made of: the last of the files it holds
    (the shared ones come first)."""
    package = Path(webhooks.__file__).parent
    folders = [package / "storage" / "lua"]
    found, at = "other", -1
    for folder in folders:
        for path in folder.glob("*.lua"):
            position = source.find(path.read_bytes())
            if position > at:
                found, at = path.stem, position
    return found


def measure(count: int, binary: str | None = None) -> dict[str, Any]:
    binary = binary or installed_server()
    commands = capture(count)
    empty = replay([], binary)["instructions"]
    replayed = replay(commands, binary)
    return {
        "redis": binary,
        "deliveries": count,
        "commands_sent": len(commands),
        "instructions_per_delivery": round((replayed["instructions"] - empty) / count),
        "script_calls_per_delivery": {
            name: round(n / count, 3) for name, n in sorted(replayed["script_calls"].items())
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--binary", help="the redis-server to replay into (the machine's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.count, args.binary)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"{figures['deliveries']} first-try deliveries, {figures['commands_sent']} commands "
        f"sent, replayed into {figures['redis']} under callgrind: "
        f"{figures['instructions_per_delivery']:,} instructions per delivery"
    )
    print(
        "script calls per delivery: "
        + ", ".join(f"{name} {n}" for name, n in figures["script_calls_per_delivery"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
