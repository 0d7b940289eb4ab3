"""What the commands share: the console, the --json flag, times, and event files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import IO, Any, ClassVar

import click
from rich.console import Console

from ..clock import now

__all__ = ["Moment", "console", "json_option", "read_event"]

console = Console()
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class Moment(click.ParamType[datetime]):
    """A point in time: ISO-8601, or a span before now such as 90s, 30m, 6h, 2d."""

    name = "time"
    _units: ClassVar[dict[str, str]] = {"s": "seconds", "m": "minutes", "h": "hours",
                                        "d": "days"}

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
        if match:
            return now() - timedelta(**{self._units[match[2]]: float(match[1])})
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is neither ISO-8601 nor a span like 6h or 2d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_event(event_file: IO[str]) -> Any:
    """The JSON in an event file (or stdin), or a one-line error."""
    text = event_file.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{event_file.name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
