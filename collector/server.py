"""Running the collector: HTTP (uvicorn) and gRPC in one event loop, clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from collector.app import build_app
from collector.helpers import keep_out, tune_gc
from collector.receivers.otlp_grpc import build_grpc_server
from collector.service import Collector, Settings
from collector.store.writer import StoreOpenError

log = logging.getLogger("sagalens")

# Optional long-running tasks (broker taps) started beside the servers.
TaskFactory = Callable[[Collector], list[Awaitable[None]]]
_task_factories: list[TaskFactory] = []


def register_task_factory(factory: TaskFactory) -> None:
    _task_factories.append(factory)


def _broker_taps(collector: Collector) -> list[Awaitable[None]]:
    from collector.receivers.taps import tap_tasks

    return tap_tasks(collector)


register_task_factory(_broker_taps)

# The interpreter's default is 5 ms. At 1 ms, a commit of three requests took 24 ms
# beside a decoding thread against 8 ms alone; at 0.2 ms, 11 ms. In the collector,
# alternating 12 s runs gave 67-70k spans/s at 1 ms and 74-75k at 0.2 ms with analysis
# off, 57-61k and 60-62k with it on; benchmarks/ingest.py, 62.0k and 67.6k against 64.9k
# and 68.7k.
SWITCH_INTERVAL_S = 0.0002


async def serve(settings: Settings, ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, commit what was accepted, close."""
    # The writer thread hands the GIL back and forth with every call into DuckDB (and
    # DuckDB takes it between tasks to check for signals); each time, it waits for the
    # decoding thread to let go, up to the switch interval. At the default 5 ms those waits
    # made most of a commit's time under load (see SWITCH_INTERVAL_S).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # The HTTP port is bound before the store opens: a port in use is the commonest start-up
    # problem, and it should cost nothing to report.
    http_socket = bind_http(settings.host, settings.http_port)
    try:
        collector = Collector(settings)
    except StoreOpenError as exc:
        http_socket.close()
        raise SystemExit(str(exc)) from None
    collector.start()
    await asyncio.wrap_future(collector.writer.run(lambda conn: record_start(conn, settings)))
    app = build_app(collector)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.http_port,
        # The C parser: h11, uvicorn's pure-Python fallback, parses each request under the
        # GIL that decoding needs.
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    http = uvicorn.Server(config)
    # The collector handles SIGTERM/SIGINT itself, to shut gRPC, HTTP and the writer in order.
    setattr(http, "install_signal_handlers", lambda: None)  # noqa: B010
    try:
        grpc_server, grpc_port = build_grpc_server(
            collector, f"{_bracketed(settings.host)}:{settings.grpc_port}"
        )
    except SystemExit:
        http_socket.close()
        collector.close()
        raise
    await grpc_server.start()
    tune_gc()  # everything the collector keeps for its life is loaded by now

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    tasks = [asyncio.ensure_future(t) for f in _task_factories for t in f(collector)]
    while not http.started and not http_task.done():
        await asyncio.sleep(0.02)
    if http_task.done():
        await grpc_server.stop(0)
        collector.close()
        gc.unfreeze()  # see below
        http_task.result()
        raise SystemExit(f"could not start HTTP on {settings.host}:{settings.http_port}")
    host = _bracketed(settings.host)
    log.warning(
        "sagalens collector: OTLP/HTTP and API on http://%s:%d, OTLP/gRPC on %s:%d, store %s",
        host,
        http_socket.getsockname()[1],
        host,
        grpc_port,
        settings.db,
    )
    if ready is not None:
        ready()
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait([stop_wait, http_task], return_when=asyncio.FIRST_COMPLETED)
    log.warning("sagalens collector: shutting down")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    http.should_exit = True
    await grpc_server.stop(5)
    await http_task
    await asyncio.to_thread(collector.close)
    # What tune_gc froze is freed with the interpreter again (DuckDB's bindings report
    # whatever of theirs outlives it as leaked).
    gc.unfreeze()
    log.warning("sagalens collector: stopped, store closed")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind_http(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or SystemExit saying why there is none."""
    where = f"{_bracketed(host)}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SystemExit(f"could not start HTTP on {where}: {reason}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"could not start HTTP on {where}: {exc.strerror or exc}") from None
    return sock


def record_start(conn: Any, settings: Settings) -> None:
    """Audit the configuration the collector runs with, when it differs from the last start."""
    import getpass
    import hashlib
    import time

    from collector.audit import append_audit
    from collector.store.columns import to_json

    digest = hashlib.sha256(to_json(settings.config).encode()).hexdigest()
    last = conn.execute(
        "SELECT details->>'config_sha256' FROM audit_log WHERE action = 'config.loaded' "
        "ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if last is None or last[0] != digest:
        append_audit(
            conn,
            time.time_ns(),
            getpass.getuser(),
            "config.loaded",
            {
                "config_file": settings.config_file,
                "config_sha256": digest,
                "token_required": bool(settings.token),
            },
        )


def run(settings: Settings) -> None:
    keep_out("pandas")  # the collector never builds a DataFrame: about 55 MB saved
    asyncio.run(serve(settings))
