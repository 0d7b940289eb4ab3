"""What the commands share: the console, the --json flag, times, and event files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import IO, Any, ClassVar

import click
from rich.console import Console

from ..clock import now
from ..errors import InvalidEvent
from ..events import loads_event

__all__ = ["Moment", "console", "json_option", "read_event"]

console = Console()
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class Moment(click.ParamType[datetime]):
    """A point in time: ISO-8601, or a span before now such as 90s, 30m, 6h, 2d."""

    name = "time"
    _units: ClassVar[dict[str, str]] = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        shown = repr(text[:40] + ("…" if len(text) > 40 else ""))
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
        if match:
            try:
                return now() - timedelta(**{self._units[match[2]]: float(match[1])})
            except (OverflowError, ValueError):
                self.fail(f"{shown} reaches back before the year 1", param, ctx)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{shown} is neither ISO-8601 nor a span like 6h or 2d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_event(event_file: IO[bytes]) -> Any:
    """The JSON in an event file (or stdin), or a one-line error naming the file."""
    try:
        return loads_event(event_file.read())
    except InvalidEvent as exc:
        raise click.ClickException(f"{event_file.name}: {exc}") from None
