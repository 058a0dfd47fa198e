"""`sagalens report` of sagas: what it says when there is nothing to report on."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import main
from tests.dashboard.reportdata import audit_store


@pytest.mark.parametrize("fmt", ["pdf", "csv", "json", "ocel"])
def test_a_report_of_an_unknown_saga_says_so_and_writes_nothing(tmp_path: Path, fmt: str) -> None:
    store = audit_store(tmp_path / "store.duckdb")
    out = tmp_path / f"report.{fmt}"
    result = CliRunner().invoke(
        main, ["report", "--db", str(store), "--saga", "nope", "--format", fmt, "--out", str(out)]
    )
    assert result.exit_code == 1
    assert result.output == "Error: no saga with key 'nope'\n"
    assert not list(tmp_path.glob("report.*"))
