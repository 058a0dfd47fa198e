"""Routes contributed by further receivers (CloudEvents over HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from collector.receivers import events_http

if TYPE_CHECKING:
    from collector.service import Collector


def extra_routes(collector: Collector) -> list[Route]:
    return events_http.routes(collector)
