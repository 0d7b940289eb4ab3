"""How deliveries look in a terminal. URLs, errors and answers come from customers'
receivers: they are escaped, so that rich shows them rather than reads them as markup."""

from __future__ import annotations

from collections.abc import Iterable

from rich.markup import escape
from rich.table import Table

from ..clock import isoformat
from ..models import Delivery, DeliveryStatus

__all__ = ["STATUS_STYLE", "attempts_table", "deliveries_table"]

STATUS_STYLE = {
    DeliveryStatus.PENDING: "cyan",
    DeliveryStatus.RETRYING: "yellow",
    DeliveryStatus.DELIVERED: "green",
    DeliveryStatus.RETRIES_EXHAUSTED: "red",
}


def _status(delivery: Delivery) -> str:
    marked = " [magenta](test)[/]" if delivery.test else ""
    if delivery.waiting_behind:
        marked += f" [dim](behind {escape(delivery.waiting_behind)})[/]"
    return f"[{STATUS_STYLE[delivery.status]}]{delivery.status.value}[/]{marked}"


def _last_error(delivery: Delivery) -> str:
    for attempt in reversed(delivery.attempts):
        if attempt.error:
            return escape(f"{attempt.error.kind}: {attempt.error.message}")
    return ""


def deliveries_table(
    deliveries: Iterable[Delivery], title: str | None = None, compact: bool = False
) -> Table:
    """One row per delivery; ``compact`` drops the times and keeps error kinds only."""
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=not compact)
    columns = ["url", "status", "attempts"]
    columns += ["last error"] if compact else ["updated_at", "next_attempt_at", "last error"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for delivery in deliveries:
        error = _last_error(delivery)
        times = (
            []
            if compact
            else [
                isoformat(delivery.updated_at),
                isoformat(delivery.next_attempt_at) if delivery.next_attempt_at else "",
            ]
        )
        table.add_row(
            delivery.id[:8] if compact else delivery.id,
            escape(delivery.url),
            _status(delivery),
            str(len(delivery.attempts)),
            *times,
            error.split(":")[0] if compact else error,
        )
    return table


def attempts_table(delivery: Delivery) -> Table:
    owner = "".join(
        f" ({name} {escape(value)})"
        for name, value in (("tenant", delivery.tenant_id), ("endpoint", delivery.endpoint_id))
        if value
    )
    table = Table(
        title=f"{delivery.id}  {_status(delivery)}  {delivery.event_type} "
        f"{escape(delivery.event_id)}  → {escape(delivery.url)}{owner}",
        title_justify="left",
        caption=f"stopped early: {escape(delivery.stop_reason)}" if delivery.stop_reason else None,
        caption_justify="left",
    )
    for column in ("#", "started_at", "ms", "status", "error", "response (first 4 KB)"):
        table.add_column(column, overflow="fold")
    for attempt in delivery.attempts:
        table.add_row(
            str(attempt.number),
            isoformat(attempt.started_at),
            f"{attempt.duration_ms:.1f}",
            str(attempt.status_code or ""),
            escape(f"{attempt.error.kind}: {attempt.error.message}") if attempt.error else "",
            escape(attempt.response_body[:200]),
        )
    return table
