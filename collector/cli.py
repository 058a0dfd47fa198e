"""The ``sagalens`` command. Domain errors become click exceptions only here."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import click

from collector.client import SourceError, open_source
from collector.service import (
    DEFAULT_ANALYSIS_SHARE,
    DEFAULT_DECODE_PROCESSES,
    DEFAULT_MAX_BODY,
    Settings,
)
from dashboard.format import count_label, format_time

if TYPE_CHECKING:
    from dashboard.report import ReportMeta

DEFAULT_DB = "sagalens.duckdb"


def _load_config(path: str) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise click.ClickException(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from exc
    except yaml.YAMLError as exc:
        raise click.ClickException(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"config file {path} must hold a mapping at the top level")
    where = _not_finite(data)
    if where:
        raise click.ClickException(f"config file {path}: {where} is not a finite number")
    from collector.analysis.config import ConfigError, SagaConfig
    from collector.receivers.taps import TapConfigError, parse_taps

    try:
        SagaConfig.from_dict(data)
        parse_taps(data.get("taps"))
    except (ConfigError, TapConfigError) as exc:
        raise click.ClickException(f"config file {path}: {exc}") from exc
    if data.get("redaction") is not None:
        # the report package is imported only for a file that has redaction rules
        from dashboard.report import RedactionRules, ReportError

        try:
            RedactionRules.from_dict(data["redaction"])
        except ReportError as exc:
            raise click.ClickException(f"config file {path}: {exc}") from exc
    return data


def _not_finite(value: Any, where: str = "") -> str:
    """The path of the first NaN or infinity in a parsed config, or ""."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _not_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return ""


def _source(collector: str, db: str, token: str) -> Any:
    try:
        return open_source(collector, db, token)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc


db_option = click.option("--db", envvar="SAGALENS_DB", default="", help="DuckDB file to read.")
collector_option = click.option(
    "--collector",
    "collector_url",
    envvar="SAGALENS_COLLECTOR",
    default="",
    help="Collector base URL, e.g. http://127.0.0.1:4318.",
)


def _token(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # it travels in an HTTP header (and OTEL_EXPORTER_OTLP_HEADERS), which holds visible ASCII
    if value and not all("!" <= c <= "~" for c in value):
        raise click.BadParameter("use visible ASCII characters only, no spaces")
    return value


token_option = click.option(
    "--token",
    envvar="SAGALENS_TOKEN",
    default="",
    callback=_token,
    help="Bearer token for ingest and API requests.",
)
PORT = click.IntRange(1, 65535)
dashboard_port_option = click.option(
    "--port", envvar="SAGALENS_DASHBOARD_PORT", type=PORT, default=8501, show_default=True
)


class FiniteRange(click.FloatRange):
    """A float range that also refuses NaN, which compares false with either bound."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sagalens")
def main() -> None:
    """sagalens: saga observability and audit."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")


def collector_settings(
    db: str,
    host: str,
    http_port: int,
    grpc_port: int,
    config: str,
    token: str,
    max_body: int,
    max_queue_rows: int,
    analysis: bool = True,
) -> Settings:
    return Settings(
        db=db,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        token=token,
        config_file=config,
        config=_load_config(config),
        max_body_bytes=max_body,
        max_pending_rows=max_queue_rows,
        analysis=analysis,
    )


def _collector_options(fn: Any) -> Any:
    options = [
        click.option(
            "--db",
            envvar="SAGALENS_DB",
            default=DEFAULT_DB,
            show_default=True,
            help="DuckDB file (created if missing).",
        ),
        click.option("--host", envvar="SAGALENS_HOST", default="127.0.0.1", show_default=True),
        click.option(
            "--http-port", envvar="SAGALENS_HTTP_PORT", type=PORT, default=4318, show_default=True
        ),
        click.option(
            "--grpc-port", envvar="SAGALENS_GRPC_PORT", type=PORT, default=4317, show_default=True
        ),
        click.option(
            "--config",
            envvar="SAGALENS_CONFIG",
            default="",
            help="Saga definitions / collector config file (YAML).",
        ),
        token_option,
        click.option(
            "--max-body",
            envvar="SAGALENS_MAX_BODY",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_BODY,
            show_default=True,
            help="Largest request body after decompression, bytes.",
        ),
        click.option(
            "--analysis/--no-analysis",
            envvar="SAGALENS_ANALYSIS",
            default=True,
            show_default=True,
            help="Analyse sagas as records arrive, and sweep open ones for stalls.",
        ),
        click.option(
            "--max-queue-rows",
            envvar="SAGALENS_MAX_QUEUE_ROWS",
            type=click.IntRange(min=1),
            default=20_000,
            show_default=True,
            help="Rows the write queue may hold before ingest answers 503.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command("collector")
@_collector_options
@click.option(
    "--tap",
    "taps",
    multiple=True,
    envvar="SAGALENS_TAP",
    metavar="URL",
    help="Broker tap, repeatable: amqp://guest:guest@host:5672/?exchange=orders"
    "&binding=#  nats://host:4222?subject=orders.>  kafka://host:9092?topic=orders",
)
@click.option(
    "--decode-processes",
    envvar="SAGALENS_DECODE_PROCESSES",
    type=click.IntRange(min=0),
    default=DEFAULT_DECODE_PROCESSES,
    show_default=True,
    help="Worker processes that decode OTLP and large CloudEvents bodies (0: decode in "
    "threads of the collector's own process).",
)
@click.option(
    "--analysis-share",
    envvar="SAGALENS_ANALYSIS_SHARE",
    type=FiniteRange(min=0.01, max=1.0),
    default=DEFAULT_ANALYSIS_SHARE,
    show_default=True,
    help="Share of the time analysis may take while ingest keeps the writer busy; the "
    "backlog waits in the store meanwhile (1: no limit).",
)
@click.option(
    "--sweep-interval",
    envvar="SAGALENS_SWEEP_INTERVAL",
    type=FiniteRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds between stall sweeps over open sagas.",
)
def collector_cmd(
    decode_processes: int,
    analysis_share: float,
    sweep_interval: float,
    db: str,
    host: str,
    http_port: int,
    grpc_port: int,
    config: str,
    token: str,
    max_body: int,
    analysis: bool,
    max_queue_rows: int,
    taps: tuple[str, ...],
) -> None:
    """Run the collector: OTLP, CloudEvents and taps in; query API out."""
    from collector.receivers.taps import TapConfigError, tap_from_url
    from collector.server import run

    settings = collector_settings(
        db, host, http_port, grpc_port, config, token, max_body, max_queue_rows, analysis
    )
    settings.sweep_interval_s = sweep_interval
    settings.analysis_share = analysis_share
    settings.decode_processes = decode_processes
    try:
        settings.taps = [*(settings.config.pop("taps", None) or []), *map(tap_from_url, taps)]
    except TapConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    run(settings)


def _dashboard_process(
    collector_url: str, db: str, port: int, token: str
) -> subprocess.Popen[bytes]:
    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    env = dict(os.environ)
    env["SAGALENS_COLLECTOR"] = collector_url
    env["SAGALENS_DB"] = db if not collector_url else ""
    env["SAGALENS_TOKEN"] = token
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(app),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.address",
            "127.0.0.1",
            # a product page, not a development server: no Deploy button or developer menu,
            # and no watching of every imported module's source for edits
            "--client.toolbarMode",
            "minimal",
            "--server.fileWatcherType",
            "none",
        ],
        env=env,
        start_new_session=True,
    )


@main.command("dashboard")
@collector_option
@db_option
@dashboard_port_option
@token_option
def dashboard_cmd(collector_url: str, db: str, port: int, token: str) -> None:
    """Run the dashboard against a collector (live) or a DuckDB file (offline)."""
    if not collector_url and not db:
        collector_url = "http://127.0.0.1:4318"
    _check_port_free(port)
    proc = _dashboard_process(collector_url, db, port, token)

    def _terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    # Streamlit runs in a session of its own, so a SIGTERM to this process must be passed on
    signal.signal(signal.SIGTERM, _terminate)
    try:
        raise SystemExit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()


def _check_port_free(port: int) -> None:
    """Fail early when the dashboard's port is taken: Streamlit would exit once started."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot start the dashboard on port {port}: {exc.strerror}; "
                "choose another with --port"
            ) from None


def _wait_started(
    name: str, url: str, proc: subprocess.Popen[bytes], ours: Callable[[Any], bool], timeout: float
) -> None:
    """Wait until ``url`` answers 200 and ``ours(response)``, while ``proc`` runs."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"the {name} exited during start-up (see above)")
        try:
            answer = httpx.get(url, timeout=1)
            if answer.status_code == 200 and ours(answer):
                return
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the {name} did not start at {url}")


def _wait_dashboard(port: int, proc: subprocess.Popen[bytes]) -> None:
    url = f"http://127.0.0.1:{port}/_stcore/health"
    _wait_started("dashboard", url, proc, lambda _: True, timeout=90)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    def ours(health: Any) -> bool:
        # another collector may answer on the port while this one fails to bind it
        return bool(health.json().get("pid") == proc.pid)

    _wait_started("collector", f"{url}/healthz", proc, ours, timeout=30)


DEMO_GUIDE = """\
Two sample systems now send an order saga or two every second:
  - OrderSaga, orchestrated: an orchestrator calls inventory, payments and shipping over HTTP
    (half traced with saga.* attributes, half like Temporal activities);
  - OrderFulfillment, choreographed: four services react to each other's CloudEvents.
Some sagas are made to fail, to forget or botch a compensation, or to hang. Look at:
  - Overview: statuses over time and the open findings;
  - Sagas, status compensation_missing: an order charged or reserved whose undo never ran;
    open one for its timeline and the explanation;
  - Findings: stalls (a step waited for past its timeout) and failed compensations;
  - Flow: the step-to-step flow learned from the traffic."""


def _demo_broker(amqp: str, http_port: int) -> tuple[str, str, str]:
    """The collector's tap URL, the AMQP URL and exchange of the demo's choreographed system.

    With RabbitMQ reachable at ``amqp``, the shop's services talk over a topic exchange and
    the collector watches it through a tap; otherwise they use an in-process bus.
    """
    if not amqp:
        click.echo("demo: choreographed system on an in-process bus (--amqp is empty)")
        return "", "", ""
    from collector.receivers.taps import shown_url
    from sample_data.rabbit import declare_tap_queue, demo_exchange, reachable

    shown = shown_url(amqp)
    if not reachable(amqp):
        click.echo(f"demo: no RabbitMQ at {shown}; choreographed system on an in-process bus")
        return "", "", ""
    exchange = demo_exchange(http_port)
    tap_queue = f"sagalens.tap.{exchange}"
    try:
        declare_tap_queue(amqp, exchange, tap_queue)
    except Exception as exc:
        click.echo(f"demo: RabbitMQ at {shown} refused the demo ({exc}); using an in-process bus")
        return "", "", ""
    click.echo(f"demo: choreographed system on RabbitMQ at {shown}, exchange {exchange}, tapped")
    query = urlencode({"exchange": exchange, "queue": tap_queue, "durable": "false"})
    return f"{amqp}{'&' if '?' in amqp else '?'}{query}", amqp, exchange


def _run_up(opts: dict[str, Any], demo: bool) -> None:
    db, host, config, token = opts["db"], opts["host"], opts["config"], opts["token"]
    http_port, grpc_port, port = opts["http_port"], opts["grpc_port"], opts["port"]
    cmd = [
        sys.executable,
        "-m",
        "collector",
        "collector",
        "--db",
        db,
        "--host",
        host,
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
    ]
    if config:
        cmd += ["--config", config]
    cmd += ["--max-body", str(opts["max_body"]), "--max-queue-rows", str(opts["max_queue_rows"])]
    if not opts["analysis"]:
        cmd.append("--no-analysis")
    env = dict(os.environ, SAGALENS_TOKEN=token)
    amqp = exchange = ""
    if demo:
        tap, amqp, exchange = _demo_broker(opts["amqp"], http_port)
        # through the environment, like the token, so the broker password stays out of `ps`
        env["SAGALENS_TAP"] = " ".join(filter(None, (os.environ.get("SAGALENS_TAP", ""), tap)))
    _check_port_free(port)
    procs: list[Any] = []
    # Own sessions: Ctrl-C reaches only this process, which stops the demo traffic first and
    # then the children in order, so nothing in flight is lost.
    collector = subprocess.Popen(cmd, env=env, start_new_session=True)
    procs.append(collector)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{http_port}"
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    # Ctrl-C stops everything, even when started from a shell that ignores SIGINT for
    # background jobs
    signal.signal(signal.SIGINT, signal.default_int_handler)
    traffic = None
    died: list[tuple[str, int | None]] = []
    try:
        _wait_healthy(url, collector)
        dashboard = _dashboard_process(url, "", port, token)
        procs.append(dashboard)
        _wait_dashboard(port, dashboard)
        if demo:
            from sample_data.traffic import DemoTraffic

            traffic = DemoTraffic(
                url,
                f"{host}:{grpc_port}",
                token=token,
                amqp_url=amqp,
                amqp_exchange=exchange,
                faults=opts["faults"],
            ).start()
        click.echo(
            f"sagalens is up: dashboard http://127.0.0.1:{port}  collector {url}  store {db}"
        )
        if demo:
            click.echo(DEMO_GUIDE)
        click.echo("Press Ctrl-C to stop.")
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        names = ("collector", "dashboard")
        died = [(n, p.poll()) for n, p in zip(names, procs, strict=False) if p.poll() is not None]
    except KeyboardInterrupt:
        stop["now"] = True
    finally:
        # A second Ctrl-C while the traffic flushes must not cut this short: the children
        # run in their own sessions and would be left running. Stopping is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if traffic is not None:
            traffic.stop()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    if not stop["now"] and died:
        name, code = died[0]
        raise click.ClickException(f"the {name} stopped (exit code {code}), so sagalens did too")


def _faults_option(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    from sample_data.outcomes import parse_faults

    try:
        return parse_faults(value) if value else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _up_options(fn: Any) -> Any:
    return _collector_options(dashboard_port_option(fn))


@main.command("up")
@_up_options
def up_cmd(**opts: Any) -> None:
    """Collector and dashboard together on the embedded DuckDB default."""
    _run_up(opts, demo=False)


@main.command("demo")
@_up_options
@click.option(
    "--amqp",
    envvar="SAGALENS_DEMO_AMQP",
    default="amqp://guest:guest@127.0.0.1:5672/",
    show_default=True,
    help="RabbitMQ for the choreographed sample system, watched through a tap; "
    "unreachable or empty: an in-process bus.",
)
@click.option(
    "--faults",
    envvar="SAGALENS_DEMO_FAULTS",
    default="",
    callback=_faults_option,
    help="Share of sample sagas per trouble, e.g. compensation_missing=0.3,stalled=0.1 "
    "(troubles: compensated, compensation_missing, compensation_failed, stalled; "
    "the rest complete).",
)
def demo_cmd(**opts: Any) -> None:
    """`up` plus live sample traffic from both sample systems."""
    if not opts["config"]:
        from sample_data import DEMO_CONFIG

        opts["config"] = str(DEMO_CONFIG)
    _run_up(opts, demo=True)


@main.command("sagas")
@collector_option
@db_option
@token_option
@click.option("--status", default="", help="Comma-separated statuses.")
@click.option("--type", "saga_type", default="", help="Saga type.")
@click.option("--finding", default="", help="Only sagas with an open finding of this kind.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sagas_cmd(
    collector_url: str,
    db: str,
    token: str,
    status: str,
    saga_type: str,
    finding: str,
    limit: int,
    as_json: bool,
) -> None:
    """List sagas with their status."""
    if not collector_url and not db:
        db = DEFAULT_DB
    source = _source(collector_url, db, token)
    try:
        page = source.list_sagas(
            {"status": status, "type": saga_type, "finding": finding, "limit": limit}
        )
    except (SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(page, indent=2, default=str))
        return
    rows = page["sagas"]
    if not rows:
        click.echo("no sagas match")
        return
    click.echo(_saga_table(rows))
    click.echo(f"{len(rows):,} of {count_label(int(page['total']), 'saga')}")


def _saga_table(rows: list[dict[str, Any]]) -> str:
    """Sagas as aligned text columns under a header, the explanation last and whole."""
    header = ("SAGA", "STATUS", "TYPE", "STARTED", "FINDINGS", "EXPLANATION")
    table = [header] + [
        (
            r["saga_key"],
            r["status"],
            r["saga_type"] or "-",
            format_time(r["started_ns"]),
            str(r.get("open_finding_count", r["finding_count"])),
            r["explanation"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in table
    )


def _completeness(source: Any) -> Any:
    from dashboard.export import store_completeness

    return store_completeness(source.overview(), source.describe())


def _report_meta(**scope: Any) -> ReportMeta:
    """Who, when, where and which version, for the report header and the audit entry."""
    import getpass

    from dashboard.export import local_meta

    return local_meta(time.time_ns(), getpass.getuser(), **scope)


def _record_export(source: Any, actor: str, details: dict[str, Any]) -> None:
    """Append ``report.exported`` to the audit log, or say why it could not be."""
    try:
        recorded = source.record_action(actor, "report.exported", details)
    except SourceError as exc:
        raise click.ClickException(
            f"report written but not recorded in the audit log: {exc}"
        ) from exc
    if not recorded:
        click.echo("note: not recorded in the audit log (the store was opened read-only)")


def _export_audit_log(source: Any, out: Path, sign_key: Path | None) -> None:
    from dashboard.export import export_details
    from dashboard.report import ReportError, export_audit_log

    meta = _report_meta(title="sagalens audit log")
    try:
        log = source.audit_log()
        result = export_audit_log(log["entries"], out, meta, sign_key)
    except (ReportError, SourceError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"wrote {out} and {result.manifest}: {result.record_count} entries, "
        f"chain head {result.data_digest}{', signed' if result.signed else ''}"
    )
    if not log["verified"]:
        click.echo(
            "warning: the audit log as stored does not verify; the export shows the same:\n"
            + "\n".join(f"  problem: {p}" for p in log["problems"]),
            err=True,
        )
    _record_export(source, meta.generated_by, export_details(result, meta, str(out)))


@main.command("report")
@collector_option
@db_option
@token_option
@click.option("--from", "from_", default="", help="Start of the period (ISO 8601 or ns).")
@click.option("--to", "to", default="", help="End of the period (ISO 8601 or ns).")
@click.option("--saga", default="", help="Report on one saga (its key).")
@click.option("--status", default="", help="Only sagas with these statuses (comma-separated).")
@click.option("--type", "saga_type", default="", help="Only sagas of this type.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pdf", "csv", "json", "ocel", "audit-log"]),
    required=True,
    help="audit-log exports sagalens' own audit log, always whole and unredacted "
    "(its hash chain is checked from the first entry).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--config",
    envvar="SAGALENS_CONFIG",
    default="",
    help="Config file whose `redaction:` rules apply.",
)
@click.option(
    "--sign-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 private key (PEM) that signs the manifest.",
)
@click.option("--no-redaction", is_flag=True, help="Export unredacted values.")
def report_cmd(
    collector_url: str,
    db: str,
    token: str,
    from_: str,
    to: str,
    saga: str,
    status: str,
    saga_type: str,
    fmt: str,
    out: Path,
    config: str,
    sign_key: Path | None,
    no_redaction: bool,
) -> None:
    """Export a tamper-evident audit report (PDF, CSV, JSON Lines, OCEL 2.0) or the audit log."""
    from collector.api import parse_time_ns
    from collector.store.queries import QueryError
    from dashboard.export import export_details
    from dashboard.report import RedactionRules, ReportError, export_report

    if fmt == "audit-log":
        scoped = [
            flag
            for flag, value in (
                ("--from", from_),
                ("--to", to),
                ("--saga", saga),
                ("--status", status),
                ("--type", saga_type),
            )
            if value
        ]
        if scoped:
            raise click.UsageError(
                f"{', '.join(scoped)} cannot be used with --format audit-log: the whole log is "
                "exported, so that its hash chain can be checked from the first entry"
            )
    if not collector_url and not db:
        db = DEFAULT_DB
    source = _source(collector_url, db, token)
    if fmt == "audit-log":
        _export_audit_log(source, out, sign_key)
        return
    cfg = _load_config(config)
    try:
        from_ns, to_ns = parse_time_ns(from_, "--from"), parse_time_ns(to, "--to")
        if from_ns and to_ns and from_ns > to_ns:
            raise click.UsageError("--from is later than --to: the period would hold nothing")
        if no_redaction:
            rules = RedactionRules.disabled()
        elif "redaction" in cfg:
            rules = RedactionRules.from_dict(cfg["redaction"])
        else:
            rules = RedactionRules.defaults()
        meta = _report_meta(
            from_ns=from_ns,
            to_ns=to_ns,
            saga_key=saga,
            filters={k: v for k, v in (("status", status), ("type", saga_type)) if v},
        )
        if saga:
            found = source.get_saga(saga, records=False)
            if found is None:
                raise click.ClickException(f"no saga with key {saga!r}")
            sagas: Any = [found]
        else:
            sagas = source.iter_sagas(
                {"from": from_, "to": to, "status": status, "type": saga_type}
            )
        result = export_report(sagas, fmt, out, meta, _completeness(source), rules, sign_key)
    except (ReportError, SourceError, QueryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"wrote {', '.join(str(f) for f in result.files)} and {result.manifest}: "
        f"{result.saga_count} sagas, {result.record_count} records, "
        f"digest {result.data_digest}{', signed' if result.signed else ''}"
    )
    _record_export(source, meta.generated_by, export_details(result, meta, str(out)))


@main.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--pubkey",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Trusted Ed25519 public key (PEM) the signature must match.",
)
def verify_cmd(path: Path, pubkey: Path | None) -> None:
    """Check an exported report's or audit log's hash chain, file digests and signature."""
    from dashboard.report import VerifyError, verify

    try:
        report = verify(path, pubkey)
    except VerifyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)


@main.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--db",
    envvar="SAGALENS_DB",
    default="",
    help=f"DuckDB file to write (default {DEFAULT_DB}); no collector may hold it.",
)
@collector_option
@token_option
@click.option(
    "--config",
    envvar="SAGALENS_CONFIG",
    default="",
    help="Saga definitions file (YAML) for the analysis after a --db import.",
)
def import_cmd(
    files: tuple[Path, ...], db: str, collector_url: str, token: str, config: str
) -> None:
    """Import OTLP JSON lines and CloudEvents files (JSON, JSON array, JSONL)."""
    from collector.importer import ImporterError, import_into_db, import_via_collector

    if db and collector_url:
        raise click.ClickException("use either --db or --collector, not both")
    cfg = {k: v for k, v in _load_config(config).items() if k != "taps"}
    paths = list(files)
    total = sum(p.stat().st_size for p in paths)
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
        try:
            if collector_url:
                summary = import_via_collector(paths, collector_url, token, bar.update)
            else:
                summary = import_into_db(paths, db or DEFAULT_DB, cfg, bar.update)
        except ImporterError as exc:
            raise click.ClickException(str(exc)) from exc
    sent = (
        f", sent over OTLP (stored or already present) {summary.accepted}" if collector_url else ""
    )
    click.echo(
        f"{summary.files} file(s): stored {summary.stored}, duplicates {summary.duplicates}"
        f"{sent}, rejected {len(summary.rejected)}"
    )
    for file, line, reason in summary.rejected[:50]:
        click.echo(f"  {file}:{line}: {reason}")
    if len(summary.rejected) > 50:
        click.echo(f"  ... and {len(summary.rejected) - 50} more (see the rejections table)")
    if summary.rejected and not (summary.stored or summary.duplicates or summary.accepted):
        raise click.ClickException("nothing was imported: every line was rejected")


if __name__ == "__main__":
    main()
