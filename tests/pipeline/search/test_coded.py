"""The index's track-ordered 8-bit copy (pipeline.search.coded): layout, and the bound on its cosines.

The vectors are generated (shaped like re-ID embeddings: unit length, clustered); the search through
the copy is tested against brute force on a real store layout in test_index.py.
"""
from __future__ import annotations

import numpy as np

from pipeline.search.coded import CODES, CodedRows, build_coded


def write_columns(folder, vectors: np.ndarray, tracks: np.ndarray) -> None:
    vectors.astype(np.float32).tofile(folder / "v.f32")
    (np.arange(len(tracks), dtype=np.int64) * 3 + 7).tofile(folder / "s.i64")  # sample ids, ascending
    tracks.astype(np.int64).tofile(folder / "t.i64")


def clustered(rng, n: int, d: int) -> np.ndarray:
    centres = rng.standard_normal((20, d))
    v = centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_runs_hold_each_tracks_rows_in_order_and_the_bound_holds(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 5000, 64
    vectors = clustered(rng, n, d)
    tracks = rng.integers(0, 400, n) + 5  # interleaved, track ids 0-4 unused
    write_columns(tmp_path, vectors, tracks)
    name = build_coded(tmp_path, n, d, "v.f32", "s.i64", "t.i64")
    coded = CodedRows.open(tmp_path / name, n, d)
    assert name == f"coded-{n}" and coded is not None and not (tmp_path / (name + ".tmp")).exists()

    ids = np.array([0, 5, 17, 404, 900])  # unused, used, used, last, beyond the copy
    first, length = coded.runs(ids)
    for t, a, k in zip(ids, first, length):
        want = np.flatnonzero(tracks == t)
        assert np.array_equal(coded.row[a:a + k], want)  # every row of the track, ascending
        assert np.array_equal(coded.sample_id[a:a + k], want * 3 + 7)
    worst = 0.0
    for q in clustered(rng, 50, d):
        approx = coded.approx(np.arange(n), q)
        err = np.abs(approx - vectors[np.asarray(coded.row)] @ q).max()
        assert err <= coded.bound(q)
        worst = max(worst, err / coded.bound(q))
    assert worst > 0.2  # the bound is not vacuous: the errors come near it


def test_a_damaged_copy_is_not_used(tmp_path):
    rng = np.random.default_rng(1)
    write_columns(tmp_path, clustered(rng, 300, 16), rng.integers(0, 30, 300))
    name = build_coded(tmp_path, 300, 16, "v.f32", "s.i64", "t.i64")
    with open(tmp_path / name / CODES, "r+b") as f:
        f.truncate(300 * 16 - 1)
    assert CodedRows.open(tmp_path / name, 300, 16) is None
    assert CodedRows.open(tmp_path / "coded-missing", 300, 16) is None
