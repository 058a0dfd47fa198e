"""Starting the collector, `up` and the dashboard: every bad start is one clear line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import psutil
import pytest

from tests.conftest import RunningCollector, free_port, wait_for


def _sagalens(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _foreign(path: Path) -> str:
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE orders (id INTEGER)")
    conn.close()
    return str(path)


def _written(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


# (name, extra arguments given tmp_path, what stderr says)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("empty db", lambda t: ["--db", ""], "the store must be a file: give --db a path"),
    (
        "db is a directory",
        lambda t: ["--db", str(t)],
        "could not open the store {t}: it is a directory",
    ),
    (
        "db is not DuckDB",
        lambda t: ["--db", _written(t / "x.duckdb", b"not a database\n")],
        "could not open the store {t}/x.duckdb: IO Error",
    ),
    (
        "db of another program",
        lambda t: ["--db", _foreign(t / "shop.duckdb")],
        "{t}/shop.duckdb is a DuckDB file of something else (it holds orders",
    ),
    ("port out of range", lambda t: ["--http-port", "99999"], "is not in the range 1<=x<=65535"),
    ("grpc port out of range", lambda t: ["--grpc-port", "70000"], "is not in the range"),
    (
        "unknown host",
        lambda t: ["--host", "no-such-host.invalid"],
        "could not start HTTP on no-such-host.invalid",
    ),
    (
        "negative body limit",
        lambda t: ["--max-body", "-1"],
        "'--max-body': -1 is not in the range x>=1",
    ),
    ("NaN sweep interval", lambda t: ["--sweep-interval", "nan"], "'nan' is not a number"),
    ("non-ASCII token", lambda t: ["--token", "s\u00e9cret"], "use visible ASCII characters only"),
    (
        "config with NaN",
        lambda t: [
            "--config",
            _written(t / "c.yaml", b"sagas:\n  Order:\n    stall_multiplier: .nan\n"),
        ],
        "sagas.Order.stall_multiplier is not a finite number",
    ),
    (
        "config not UTF-8",
        lambda t: ["--config", _written(t / "c.yaml", b"sagas: \xff\xfe\n")],
        "is not UTF-8 text",
    ),
]


@pytest.mark.parametrize(("args", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_start_exits_with_one_clear_line(
    tmp_path: Path, args: Callable[[Path], list[str]], says: str
) -> None:
    ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
    done = _sagalens("collector", "--db", str(tmp_path / "ok.duckdb"), *ports, *args(tmp_path))
    assert done.returncode != 0
    assert says.format(t=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr
    assert "leaked" not in done.stderr  # DuckDB's bindings complain when a store is left open


def test_a_taken_http_port_is_reported_before_the_store_is_touched(
    tmp_path: Path, listening: int
) -> None:
    db = tmp_path / "new.duckdb"
    done = _sagalens(
        "collector", "--db", str(db), "--http-port", str(listening), "--grpc-port", str(free_port())
    )
    assert done.returncode != 0
    assert f"could not start HTTP on 127.0.0.1:{listening}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr and "leaked" not in done.stderr
    assert not db.exists()


def test_a_locked_store_names_the_process_holding_it(collector: RunningCollector) -> None:
    done = _sagalens(
        "collector",
        "--db",
        str(collector.db),
        "--http-port",
        str(free_port()),
        "--grpc-port",
        str(free_port()),
    )
    assert done.returncode != 0
    assert f"{collector.db} is in use by another process (a running collector?)" in done.stderr
    assert "Could not set lock" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_foreign_duckdb_file_is_left_as_it_was(tmp_path: Path) -> None:
    path = _foreign(tmp_path / "shop.duckdb")
    done = _sagalens(
        "collector", "--db", path, "--http-port", str(free_port()), "--grpc-port", str(free_port())
    )
    assert done.returncode != 0
    conn = duckdb.connect(path, read_only=True)
    tables = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    conn.close()
    assert tables == {"orders"}


def test_a_store_of_a_newer_sagalens_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "newer.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER, description VARCHAR, applied_ns BIGINT)"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', 0)")
    conn.close()
    done = _sagalens(
        "collector",
        "--db",
        str(path),
        "--http-port",
        str(free_port()),
        "--grpc-port",
        str(free_port()),
    )
    assert done.returncode != 0
    assert "was written by a newer sagalens (schema 999" in done.stderr
    assert "Traceback" not in done.stderr


def test_up_fails_when_another_collector_holds_its_port(
    tmp_path: Path, collector: RunningCollector
) -> None:
    # the other collector answers /healthz on the port; `up` must not take it for its own
    port = collector.url.rsplit(":", 1)[1]
    done = _sagalens(
        "up",
        "--db",
        str(tmp_path / "u.duckdb"),
        "--http-port",
        port,
        "--grpc-port",
        str(free_port()),
        "--port",
        str(free_port()),
    )
    assert done.returncode == 1
    assert "sagalens is up" not in done.stdout
    assert f"could not start HTTP on 127.0.0.1:{port}" in done.stderr
    assert "the collector exited during start-up" in done.stderr


def test_up_fails_when_the_dashboard_port_is_taken(tmp_path: Path, listening: int) -> None:
    done = _sagalens(
        "up",
        "--db",
        str(tmp_path / "u.duckdb"),
        "--http-port",
        str(free_port()),
        "--grpc-port",
        str(free_port()),
        "--port",
        str(listening),
    )
    assert done.returncode == 1
    assert "sagalens is up" not in done.stdout
    assert f"cannot start the dashboard on port {listening}: Address already in use" in done.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_dashboard_passes_sigterm_on_to_streamlit(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "dashboard",
            "--db",
            str(tmp_path / "d.duckdb"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/_stcore/health"), timeout=60)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
