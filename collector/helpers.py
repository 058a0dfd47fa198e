"""Setting up the collector's helper processes, and keeping what they never use out of them.

Stdlib only: a decode process imports this module first, before anything that would load
what it keeps out. It then imports ``collector.decoding`` and what that needs, and no more:
not the store, the receivers or the command line, whose imports (DuckDB, Starlette, numpy
through pyarrow) would about double its memory.
"""

from __future__ import annotations

import gc
import importlib
import importlib.abc
import os
import signal
import sys
import threading
import time
from typing import Any


class _KeepOut(importlib.abc.MetaPathFinder):
    def __init__(self, packages: frozenset[str]) -> None:
        self.packages = packages

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"{name} is kept out of this process", name=name)


def keep_out(*packages: str) -> None:
    """Make importing these packages fail in this process, unless they are imported already.

    pyarrow imports numpy and pandas when they are installed (the dashboard needs them)
    only to recognise their objects; an import that fails tells it they are not there, and
    it carries on without them. The collector hands pyarrow neither.
    """
    kept = {p for f in sys.meta_path if isinstance(f, _KeepOut) for p in f.packages}
    absent = frozenset(p for p in packages if p not in sys.modules and p not in kept)
    if absent:
        sys.meta_path.insert(0, _KeepOut(absent))


# Young objects the cyclic garbage collector lets pile up before it looks at them (the
# interpreter's default is 700). Decoding builds a few containers per span that live until
# its batch becomes Arrow columns; at 700 the collector walked each batch several times
# while it was being built, about a sixth of the decode time
# (benchmarks/ingest.py, "full decode alone"). Reference counting still frees what is
# dropped at once; only garbage in reference cycles waits longer.
YOUNG_OBJECTS_BEFORE_GC = 20_000


def tune_gc() -> None:
    """Set a long-running process's garbage collector for a high allocation rate.

    What is loaded by now (modules, classes, caches) lives as long as the process, so it
    is moved out of the collector's sight, and full collections no longer walk it.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS_BEFORE_GC, middle, old)
    gc.freeze()


def decode_process_init(collector_pid: int) -> None:
    """Set up a decode process: small, deaf to Ctrl-C, and gone when the collector is."""
    # numpy and its BLAS are about 10 MB of each decode process; Arrow builds the batches
    # from Python lists without it.
    keep_out("pandas", "numpy")
    # Ctrl-C reaches the whole process group; the collector decides when its helpers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker holds both ends of its task queue, so it never sees the collector vanish
    # (SIGKILL, OOM killer); it watches for that itself rather than live on as an orphan.
    threading.Thread(target=_exit_with, args=(collector_pid,), daemon=True).start()
    importlib.import_module("collector.decoding")  # before the first request waits for it
    tune_gc()


def _exit_with(collector_pid: int) -> None:
    while os.getppid() == collector_pid:
        time.sleep(0.5)
    os._exit(0)


def ready() -> bool:
    """Submitted once per decode process at the start, so each starts before any request."""
    return True
