"""The compiled analysis core: that installing compiled it, and the stale-module check."""

from __future__ import annotations

import dataclasses
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


# Classes whose __init__ is written out (compiled, it is several times faster than the one
# dataclass generates), beside the fields the class declares: the two must agree.
_WRITTEN_OUT = [
    ("collector.normalize.records", "SpanRecord"),
    ("collector.normalize.records", "LogRecord"),
    ("collector.normalize.records", "EventRecord"),
    ("collector.analysis.identity", "_Keys"),
    ("collector.analysis.timeline", "Occurrence"),
    ("collector.analysis.timeline", "Timeline"),
    ("collector.analysis.compensation", "Ledger"),
    ("collector.analysis.classify", "Verdict"),
    ("collector.analysis.model", "Step"),
    ("collector.analysis.model", "Finding"),
    ("collector.analysis.model", "Saga"),
]


def _distinct_value(declared: object, index: int) -> object:
    """A value of the field's type that no default equals (containers: a fresh one).

    Compiled, a field's type is the class its annotation names (``type`` for a union or
    ``Any``); plain, it is the annotation's text.
    """
    annotation = declared if isinstance(declared, str) else getattr(declared, "__name__", "")
    if annotation == "type":
        return None
    if annotation.startswith(("list", "Sequence")):
        return []
    if annotation.startswith(("dict", "Attributes")):
        return {"field": index}
    if annotation.startswith("set"):
        return set()
    if annotation.startswith("tuple"):
        return (f"t{index}",)
    if annotation == "bool":
        return True
    if annotation == "int":
        return 1000 + index
    if annotation == "Ledger":
        from collector.analysis.compensation import Ledger

        return Ledger()
    if annotation.endswith("| None"):
        return None
    return f"v{index}"


@pytest.mark.parametrize(("module", "name"), _WRITTEN_OUT)
def test_a_written_out_constructor_sets_every_declared_field(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    fields = dataclasses.fields(cls)
    # Every field by keyword: each is set to what was passed (a field the constructor
    # does not take fails the call; one it does not set fails the comparison).
    values = {f.name: _distinct_value(f.type, i) for i, f in enumerate(fields)}
    made = cls(**values)
    for f in fields:
        assert getattr(made, f.name) is values[f.name] or getattr(made, f.name) == values[f.name]
    # Only the required ones: the others take the declared default, a fresh container each.
    required = {
        f.name: values[f.name]
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    first, second = cls(**required), cls(**required)
    for f in fields:
        if f.name in required:
            continue
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(first, f.name) == f.default_factory()
            assert getattr(first, f.name) is not getattr(second, f.name)  # never shared
        else:
            assert getattr(first, f.name) == f.default
    # Positionally too, in the declared order.
    assert cls(*values.values()) == made
