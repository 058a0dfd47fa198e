"""Build: the analysis core and the record types compiled to C with mypyc.

Everything else about the distribution is in ``pyproject.toml``. The modules below are
fully typed (mypy strict); mypyc turns them into one extension module, which analyses a
saga in about half the time. Set ``SAGALENS_PURE_PYTHON=1`` while installing to
skip it; where no C compiler is at hand the build falls back to plain Python by itself.

An editable install (``pip install -e .``) puts the compiled modules beside their
sources, where they take precedence: after changing one of these files, install again
(``collector.compiled`` warns when a compiled module is older than its source), or
delete ``collector/**/*.so`` to run the sources.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collector.compiled import COMPILED_MODULES, GROUP, pure_python_requested


def ext_modules() -> list[object]:
    if pure_python_requested():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    paths = [module.replace(".", "/") + ".py" for module in COMPILED_MODULES]
    # The project's mypy settings are for checking it against installed libraries: the
    # build environment has none of them, so it compiles with plain defaults.
    extensions = mypycify(["--config-file=", "--ignore-missing-imports", *paths], group_name=GROUP)
    for extension in extensions:
        extension.optional = True  # no compiler: the plain modules serve
    return list(extensions)


setup(ext_modules=ext_modules())
