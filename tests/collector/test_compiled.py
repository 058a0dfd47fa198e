"""The compiled analysis core: that installing compiled it, and the stale-module check."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from pathlib import Path

import pytest

from collector.compiled import (
    COMPILED_MODULES,
    compiled,
    describe,
    pure_python_requested,
    stale,
    warn_if_stale,
)


@pytest.mark.skipif(
    pure_python_requested(),
    reason="installed with SAGALENS_PURE_PYTHON: nothing was compiled",
)
def test_install_compiled_every_listed_module() -> None:
    # A failed compile falls back to the plain modules without stopping the install:
    # this is where it shows.
    assert [m for m in COMPILED_MODULES if not compiled(m)] == []
    assert describe() == "analysis core compiled (mypyc)"
    for module in COMPILED_MODULES:
        loader = importlib.import_module(module).__loader__
        assert isinstance(loader, importlib.machinery.ExtensionFileLoader), module


def _module_files(root: Path, module: str) -> tuple[Path, Path]:
    base = root.joinpath(*module.split("."))
    base.parent.mkdir(parents=True, exist_ok=True)
    source = base.with_suffix(".py")
    built = Path(str(base) + importlib.machinery.EXTENSION_SUFFIXES[0])
    source.write_text("")
    built.write_bytes(b"")
    return source, built


def test_a_source_changed_after_compiling_is_reported_stale(tmp_path: Path) -> None:
    source, built = _module_files(tmp_path, "collector.analysis.timeline")
    other, other_built = _module_files(tmp_path, "collector.analysis.core")
    os.utime(built, (1_000_000, 1_000_000))
    os.utime(source, (1_000_000 + 60, 1_000_000 + 60))  # edited a minute after
    os.utime(other, (1_000_000, 1_000_000))
    os.utime(other_built, (1_000_000, 1_000_000))
    assert stale("collector.analysis", str(tmp_path)) == ["collector.analysis.timeline"]
    assert stale("collector.normalize", str(tmp_path)) == []
    # written by an installer a moment apart: not stale
    os.utime(source, (1_000_000 + 0.5, 1_000_000 + 0.5))
    assert stale("collector.analysis", str(tmp_path)) == []
    # a source with no compiled module beside it is never stale
    built.unlink()
    os.utime(source, (2_000_000, 2_000_000))
    assert stale("collector.analysis", str(tmp_path)) == []


def test_a_stale_package_warns_at_import_and_names_the_fix(tmp_path: Path) -> None:
    source, built = _module_files(tmp_path, "collector.analysis.timeline")
    os.utime(built, (1_000_000, 1_000_000))
    os.utime(source, (1_000_000 + 60, 1_000_000 + 60))
    with pytest.warns(RuntimeWarning, match=r"collector\.analysis\.timeline changed.*pip install"):
        warn_if_stale("collector.analysis", str(tmp_path))
    os.utime(source, (1_000_000, 1_000_000))
    warn_if_stale("collector.analysis", str(tmp_path))  # up to date: no warning (an error here)
