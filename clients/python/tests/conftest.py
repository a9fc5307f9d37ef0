"""Shared test data: the repository's fixed fixtures and known-answer vectors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

REPO = HERE.parents[2]
TESTDATA = REPO / "history" / "testdata"
CUSTODY = REPO / "dist" / "custody"


def _read(name: str) -> dict:
    return json.loads((TESTDATA / name).read_text())


# The instant vector "ok" is checked at: inside every fixture SVID's validity window.
NOW: int = next(v["now"] for v in _read("vectors.json")["vectors"] if v["name"] == "ok")


@pytest.fixture(scope="session")
def fixtures() -> dict:
    return _read("fixtures.json")


@pytest.fixture(scope="session")
def vectors() -> dict:
    return _read("vectors.json")
