"""Fixtures shared by every test folder (engine tests keep theirs in tests/autograph/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` next to the repository; tests needing it skip when it is missing."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is missing (reference documents and clips live there)")
    return SHARED
