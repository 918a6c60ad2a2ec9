"""Shared pytest fixtures (keep each one small and documented)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """The real demo clip streams/vtest.avi (768x576, 10 fps, 795 frames, OpenCV sample data)."""
    path = REPO / "streams" / "vtest.avi"
    assert path.is_file(), f"missing real demo clip {path}; see streams/README.md"
    return path
