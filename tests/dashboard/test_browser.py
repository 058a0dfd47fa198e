"""End to end: `sagalens up` in a subprocess, each page opened in headless Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.conftest import free_port, wait_for
from tests.dashboard.fixtures import sample_sagas

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

pytestmark = pytest.mark.browser

_UP_LOG: list[Path] = []  # the running `sagalens up`'s output, shown when a download fails


def _require_browser() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("SAGALENS_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " and SAGALENS_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(dashboard URL, collector URL) of a running `sagalens up` filled with sample sagas."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("up")
    config = tmp / "sagalens.yaml"
    config.write_text(
        "sagas:\n  OrderSaga:\n    steps:\n"
        "      - {name: reserve_inventory, compensation: release_inventory}\n"
        "      - {name: charge_payment, compensation: refund_payment}\n"
        "      - {name: ship_order}\n      - {name: notify_customer}\n"
    )
    http, grpc, port = free_port(), free_port(), free_port()
    log = open(tmp / "up.log", "wb")  # noqa: SIM115 - lives as long as the process
    _UP_LOG[:] = [tmp / "up.log"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "up",
            "--db",
            str(tmp / "store.duckdb"),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    collector, dashboard = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{port}"

    def ok(url: str) -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp / "up.log").read_text())
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: ok(collector + "/healthz"), timeout=30)
        httpx.post(collector + "/v1/traces", json=sample_sagas(time.time_ns()), timeout=10)
        wait_for(lambda: httpx.get(collector + "/api/v1/sagas").json()["total"] == 5, timeout=15)
        wait_for(lambda: ok(dashboard + "/_stcore/health"), timeout=30)
        yield dashboard, collector
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


NAV = {  # the sidebar entry each page marks as the one shown
    "overview": "Overview",
    "overview-path": "Overview",
    "sagas": "Sagas",
    "flow": "Flow",
    "findings": "Findings",
    "audit": "Audit log",
}
PAGES = [  # (name, path, texts that must be visible)
    (
        "overview",
        "/",
        ["Overview", "Stalled", "Never undone", "Worst offenders", "order-1004"],
    ),
    ("overview-path", "/overview", ["Overview", "Never undone", "Worst offenders"]),
    ("sagas", "/sagas?status=compensation_missing", ["Sagas", "1 saga matches"]),
    ("saga-stalled", "/saga?key=" + quote("saga.id:order-1004"), ["Waiting since", "Stall"]),
    (
        "saga-missing",
        "/saga?key=" + quote("saga.id:order-1003"),
        ["Missing compensation", "release_inventory never ran", "refund_payment"],
    ),
    ("saga-completed", "/saga?key=" + quote("saga.id:order-1001"), ["Traces", "2 attempts"]),
    ("flow", "/flow?type=OrderSaga", ["Flow", "charge_payment", "Compensated", "definitions file"]),
    ("findings", "/findings", ["Findings", "Missing compensation (1)", "Stall (1)"]),
    ("audit", "/audit", ["Audit log", "The audit log verifies.", "Prepare audit log export"]),
]


def test_every_page_in_a_browser(up: tuple[str, str]) -> None:
    from playwright.sync_api import Request, expect, sync_playwright

    dashboard, _ = up
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Every page works on a closed network: nothing is fetched from another host.
        elsewhere: list[str] = []

        def note(request: Request) -> None:
            if urlsplit(request.url).hostname not in (None, "127.0.0.1"):
                elsewhere.append(request.url)

        page.on("request", note)
        try:
            for name, path, texts in PAGES:
                page.goto(dashboard + path)
                for text in texts:
                    expect(page.get_by_text(text).first).to_be_visible(timeout=15_000)
                # every path opens its own page, not Streamlit's fallback to the main one
                expect(page.get_by_text("Page not found")).to_have_count(0)
                nav = page.get_by_role("link", name=NAV.get(name, "Saga detail"), exact=True)
                expect(nav).to_have_attribute("aria-current", "page", timeout=15_000)
                if name.startswith("saga-") or name == "flow":
                    expect(page.locator(".js-plotly-plot .point").first).to_be_visible(
                        timeout=15_000
                    )
                page.wait_for_timeout(500)
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            page.goto(dashboard + "/sagas")
            expect(page.get_by_text("5 sagas match")).to_be_visible(timeout=15_000)
            expect(page.locator("[data-testid='stDataFrame']")).to_be_visible()
            expect(page.get_by_role("link", name="Overview")).to_be_visible()
            # a product page: no development server's Deploy button
            expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
            assert not elsewhere, f"the pages fetched from other hosts: {elsewhere}"
            # the tab's icon is the one the dashboard carries
            icon = page.locator("link[rel='shortcut icon'], link[rel='icon']").first
            assert icon.get_attribute("href", timeout=5_000).startswith("data:image/svg+xml")
        finally:
            browser.close()


def _download(dashboard: str, path: str, ready: str, button: str) -> bytes:
    """Open a page, wait for ``ready``, click the download ``button`` and return the file."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        console: list[str] = []  # what the page logged, shown when no download comes
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        idle = page.locator("[data-testid='stApp'][data-test-script-state='notRunning']")
        target = page.get_by_role("button", name=button, exact=True)

        def open_page() -> None:
            page.goto(dashboard + path)
            expect(page.get_by_text(ready).first).to_be_visible(timeout=15_000)
            # Click once the page's script run has finished, as a person does: a click that
            # lands while a rerun replaces the button is lost.
            expect(idle).to_have_count(1, timeout=15_000)

        def shown() -> list[str]:
            return page.locator(
                "[data-testid='stException'], [data-testid='stToast'], "
                "[data-testid='stDownloadButtonError'], [data-testid='stStatusWidget'], "
                "[role='dialog']"
            ).all_inner_texts()

        def prepare() -> None:
            # the report is made on a first click; its download button comes with it
            prepare_button = page.get_by_role("button", name=re.compile("^Prepare "))
            expect(prepare_button).to_be_enabled(timeout=15_000)
            prepare_button.click()
            expect(target).to_be_visible(timeout=30_000)
            expect(idle).to_have_count(1, timeout=15_000)

        try:
            open_page()
            prepare()
            # What gets in the way of a person, who then clicks again or reloads, and so does
            # this test, three times at most, saying each time what it saw: a click lost to the
            # rerun it starts (the button's request for its file races it), or the page's
            # connection to the dashboard lost on a loaded machine, which disables every widget
            # until it comes back.
            tries: list[str] = []
            while True:
                try:
                    expect(target).to_be_enabled(timeout=15_000)
                except AssertionError:
                    tries.append(f"the button stayed disabled, the page showed {shown()!r}")
                else:
                    try:
                        with page.expect_download(timeout=20_000) as download:
                            target.click(timeout=5_000)
                        break
                    except PlaywrightTimeout:
                        tries.append(f"a click brought no download, the page showed {shown()!r}")
                if len(tries) == 3:
                    log = _UP_LOG[0].read_text(errors="replace")[-4000:] if _UP_LOG else ""
                    raise AssertionError(
                        f"no download: {'; '.join(tries)}; its console: {console[-20:]!r}; "
                        f"log:\n{log}"
                    )
                if tries[-1].startswith("the button stayed disabled"):
                    open_page()
                    prepare()
                else:
                    expect(idle).to_have_count(1, timeout=15_000)
            return Path(download.value.path()).read_bytes()
        finally:
            browser.close()


def _last_export(collector: str, fmt: str) -> dict | None:
    last = httpx.get(collector + "/api/v1/audit").json()["entries"][-1]
    ok = last["action"] == "report.exported" and last["details"]["format"] == fmt
    return last if ok else None


def test_audit_log_download_verifies_and_is_recorded(up: tuple[str, str], tmp_path: Path) -> None:
    import io
    import json
    import zipfile

    from dashboard.report import verify

    dashboard, collector = up
    blob = _download(dashboard, "/audit", "The audit log verifies.", "Download audit log export")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        z.extractall(tmp_path)
    report = verify(tmp_path / "sagalens-audit-log.jsonl")
    assert report.ok, report.summary()
    manifest = json.loads((tmp_path / "sagalens-audit-log.jsonl.manifest.json").read_text())

    entry = wait_for(lambda: _last_export(collector, "audit-log"))
    assert entry["actor"] == "dashboard"
    assert entry["details"]["format"] == "audit-log"
    assert entry["details"]["data_digest"] == manifest["files"][0]["chain_head"]


def test_saga_report_download_verifies_and_is_recorded(up: tuple[str, str], tmp_path: Path) -> None:
    import io
    import zipfile

    from dashboard.report import verify

    dashboard, collector = up
    key = "saga.id:order-1003"
    blob = _download(
        dashboard, "/saga?key=" + quote(key), "Audit report", "Export audit report for this saga"
    )
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        z.extractall(tmp_path)
        report = next(n for n in z.namelist() if not n.endswith(".manifest.json"))
    assert verify(tmp_path / report).ok
    entry = wait_for(lambda: _last_export(collector, report.rsplit(".", 1)[-1]))
    assert entry["actor"] == "dashboard"
    assert entry["details"]["scope"]["saga_key"] == key and entry["details"]["sagas"] == 1
