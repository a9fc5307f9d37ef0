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


@pytest.fixture(scope="session")
def fixtures() -> dict:
    return json.loads((TESTDATA / "fixtures.json").read_text())


@pytest.fixture(scope="session")
def vectors() -> dict:
    return json.loads((TESTDATA / "vectors.json").read_text())
