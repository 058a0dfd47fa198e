"""Which modules the build compiles to C (with mypyc, see ``setup.py``), and whether they are.

This module imports nothing outside the standard library: ``setup.py`` reads it before any
dependency is installed.
"""

from __future__ import annotations

import importlib.machinery
import os
import warnings

# The analysis core and the record types it reads: fully typed, and where a rebuild and an
# analysis pass spend their time.
COMPILED_MODULES = (
    "collector.analysis.classify",
    "collector.analysis.compensation",
    "collector.analysis.config",
    "collector.analysis.core",
    "collector.analysis.detectors",
    "collector.analysis.identity",
    "collector.analysis.model",
    "collector.analysis.names",
    "collector.analysis.stats",
    "collector.analysis.timeline",
    "collector.normalize._otlp_json",
    "collector.normalize.cloudevents",
    "collector.normalize.messaging",
    "collector.normalize.records",
)
# The compiled modules share one extension module, collector/native__mypyc.*.
GROUP = "collector.native"

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pure_python_requested() -> bool:
    """Whether ``SAGALENS_PURE_PYTHON`` asks the build to compile nothing."""
    return os.environ.get("SAGALENS_PURE_PYTHON", "") not in ("", "0")


def _paths(module: str, root: str = _ROOT) -> tuple[str, list[str]]:
    """A module's source file, and the files its compiled form may be in."""
    base = os.path.join(root, *module.split("."))
    return base + ".py", [base + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES]


def compiled(module: str) -> bool:
    """Whether ``module`` imports from a compiled extension rather than its source."""
    return any(os.path.exists(p) for p in _paths(module)[1])


def stale(package: str, root: str = _ROOT) -> list[str]:
    """The compiled modules of ``package`` whose source changed after they were compiled
    (``root``: the directory ``collector`` is in)."""
    found = []
    for module in COMPILED_MODULES:
        if module.rpartition(".")[0] != package:
            continue
        source, built = _paths(module, root)
        # a second's grace: an installer writes a module's files one after another
        if any(
            os.path.exists(path) and os.path.getmtime(source) > os.path.getmtime(path) + 1
            for path in built
        ):
            found.append(module)
    return found


def warn_if_stale(package: str, root: str = _ROOT) -> None:
    """Warn that ``package`` runs compiled code older than its source (an editable install
    compiled before the source was changed): the change is not in effect."""
    modules = stale(package, root)
    if modules:
        warnings.warn(
            f"{', '.join(modules)} changed after it was compiled, and the compiled module "
            "still runs: install again (pip install -e .), or delete collector/**/*.so to "
            "run the sources",
            RuntimeWarning,
            stacklevel=3,
        )


def describe() -> str:
    """One line for benchmarks and diagnostics: how the analysis core runs."""
    done = [m for m in COMPILED_MODULES if compiled(m)]
    if len(done) == len(COMPILED_MODULES):
        return "analysis core compiled (mypyc)"
    if not done:
        return "analysis core in plain Python"
    return f"analysis core partly compiled ({len(done)} of {len(COMPILED_MODULES)} modules)"
