"""A small real store for the access tests: real crops of the demo clip as thumbnails, generated
unit-vector embeddings (see tests/pipeline/store/test_store.py), two people on two cameras."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.associate import CrossCameraAssociator
from pipeline.config import AssociationConfig
from tests.pipeline.store.test_store import CLIP, add_track, make_store, near, unit


def people_store(path):
    """P on north then south, Q on north then south, R on south only; associated. Returns the path."""
    rng = np.random.default_rng(7)
    p, q, r = (unit(rng) for _ in range(3))
    st = make_store(path)
    st.start_run({})
    for cam in ("north", "south"):  # the real clip is each camera's source (evidence re-reads frames)
        st.add_camera(cam, str(CLIP), {"width": 768, "height": 576})
    for cam, local, t0, v, person in (("north", 1, 0, p, 0), ("north", 2, 0, q, 1), ("south", 1, 30, p, 0),
                                      ("south", 2, 30, q, 1), ("south", 3, 100, r, 2)):
        add_track(st, cam, local, t0, t0 + 10, np.stack([near(v, 0.95, rng) for _ in range(3)]), person=person)
    CrossCameraAssociator(AssociationConfig(threshold=0.6)).link(st)
    st.close()
    return path


@pytest.fixture
def store_path(tmp_path):
    return people_store(tmp_path / "s.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """The people store once per backend: a file, or a PostgreSQL schema (skipped without PostgreSQL)."""
    if request.param == "sqlite":
        return people_store(tmp_path / "s.db")
    return people_store(request.getfixturevalue("pg_url"))
