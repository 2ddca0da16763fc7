"""Every docstring example in the library runs as a test (imported by its installed name, so the examples
exercise the same modules an application imports)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streamrec

MODULES = sorted(m.name for m in pkgutil.walk_packages(streamrec.__path__, "streamrec.")
                 if not m.name.startswith("streamrec.bench"))
# streamrec.bench and the CLI are covered by their own tests; the library packages are walked through
# their mapped folders (streamrec.models from models/, ...).
for sub in ("models", "stream", "consumers", "producers"):
    pkg = importlib.import_module(f"streamrec.{sub}")
    MODULES += sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, f"streamrec.{sub}."))
    MODULES.append(f"streamrec.{sub}")


@pytest.mark.parametrize("name", sorted(set(MODULES)))
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_examples_exist() -> None:
    """The walk finds the library's examples (an empty walk would make the test above pass vacuously)."""
    finder = doctest.DocTestFinder()
    total = sum(len(t.examples) for n in set(MODULES) for t in finder.find(importlib.import_module(n)))
    assert total > 50
