"""Reading through a collector: a URL that is not one is said so, never a traceback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from collector.cli import main
from collector.client import ApiSource, SourceError
from tests.conftest import RunningCollector


@pytest.fixture
def web_page() -> Iterator[str]:
    """A web server that is not a collector: every path answers an HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>a dashboard</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_wrong_path_on_a_collector_is_named(collector: RunningCollector) -> None:
    url = collector.url + "/api"
    result = CliRunner().invoke(main, ["sagas", "--collector", url])
    assert result.exit_code == 1
    assert f"{url} is not a sagalens collector (GET /api/v1/sagas answered 404)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_server_that_is_not_a_collector_is_named(web_page: str) -> None:
    result = CliRunner().invoke(
        main, ["report", "--collector", web_page, "--format", "json", "--out", "/dev/null"]
    )
    assert result.exit_code == 1
    assert (
        f"{web_page} is not a sagalens collector (GET /api/v1/overview did not answer JSON)"
        in result.output
    )


def test_an_unknown_saga_is_none_and_a_missing_path_an_error(collector: RunningCollector) -> None:
    assert ApiSource(collector.url).get_saga("no-such-saga") is None
    with pytest.raises(SourceError, match="is not a sagalens collector"):
        ApiSource(collector.url + "/v2").get_saga("no-such-saga")


def test_a_refused_write_says_the_collectors_reason(collector: RunningCollector) -> None:
    with pytest.raises(SourceError) as refused:
        ApiSource(collector.url).acknowledge("no-such-finding", by="alice")
    assert str(refused.value) == "collector answered 404: no finding with id 'no-such-finding'"
