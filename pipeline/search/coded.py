"""The index's track-ordered 8-bit copy of its vectors, for selective camera/time filters.

A filter selects tracks, and their samples lie scattered over ``vectors.f32`` (arrival order, every
camera interleaved): an exact score over 100k filtered samples of a 10M store touches 100k pages. This
copy holds the first ``rows`` index rows sorted by track (then row), each vector as one byte per
dimension (per-dimension minimum and step over all those rows), so a filter reads a quarter of the bytes,
one run per track. Its cosines are approximate with a known bound, ``sum_d |q_d| step_d / 2`` (a code
is the nearest of 256 levels, so each component is off by at most half a step), which lets the search
re-score exactly only the rows that can change the answer (:mod:`pipeline.search.rank`).

Folder ``coded-<rows>/`` beside the columns (written as ``.tmp``, fsynced, renamed; ``meta.json`` points
at it only after): ``codes.u8`` (rows, D) uint8; ``row.i64`` (rows,) the index row of each code;
``sample_id.i64`` (rows,) its sample id; ``start.i64`` (max_track + 2,) offsets: the codes of track t
are ``[start[t], start[t + 1])``; ``quantizer.f32`` (2, D) minimum and step per dimension.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

CODES, ROWS, SAMPLE_IDS, START, QUANTIZER = "codes.u8", "row.i64", "sample_id.i64", "start.i64", "quantizer.f32"
CHUNK = 32768  # rows per block when building (32768 x 512 codes = 16 MiB)
SCORE_CHUNK = 1024  # rows per block when scoring: their float32 copy (2 MiB at 512-d) stays in the CPU cache
LEVELS = 255  # codes 0..255


def fsync_path(path: Path) -> None:
    """fsync a file or folder by path (a folder: so the names written or renamed in it are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_coded(folder: Path, rows: int, dim: int, vectors_file: str, sample_ids_file: str, track_ids_file: str,
                progress: Callable[[int], None] | None = None) -> str:
    """Write ``coded-<rows>/`` for the first ``rows`` rows of the index in ``folder`` (its float32
    vectors and int64 sample/track id columns, by file name); returns the folder's name."""
    vectors = np.memmap(folder / vectors_file, np.float32, "r", shape=(rows, dim))
    tracks = np.fromfile(folder / track_ids_file, np.int64, count=rows)
    sample_ids = np.memmap(folder / sample_ids_file, np.int64, "r", shape=(rows,))
    order = np.argsort(tracks, kind="stable")  # by track, rows ascending within one
    start = np.zeros(int(tracks.max()) + 2, np.int64)
    np.cumsum(np.bincount(tracks, minlength=len(start) - 1), out=start[1:])
    lo, hi = np.full(dim, np.inf, np.float32), np.full(dim, -np.inf, np.float32)
    for a in range(0, rows, CHUNK):
        block = np.asarray(vectors[a:a + CHUNK])
        np.minimum(lo, block.min(0), out=lo)
        np.maximum(hi, block.max(0), out=hi)
    step = ((hi - lo) / LEVELS).astype(np.float32)
    step[step <= 0] = 1.0  # a constant dimension: every code 0, exact
    name = f"coded-{rows}"
    tmp = folder / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / CODES, "wb") as f:
        for a in range(0, rows, CHUNK):
            block = vectors[order[a:a + CHUNK]]
            f.write(np.clip(np.rint((block - lo) / step), 0, LEVELS).astype(np.uint8).tobytes())
            if progress is not None:
                progress(len(block))
    order.tofile(tmp / ROWS)
    np.asarray(sample_ids)[order].tofile(tmp / SAMPLE_IDS)
    start.tofile(tmp / START)
    np.stack([lo, step]).astype(np.float32).tofile(tmp / QUANTIZER)
    for f in (CODES, ROWS, SAMPLE_IDS, START, QUANTIZER):
        fsync_path(tmp / f)
    fsync_path(tmp)
    shutil.rmtree(folder / name, ignore_errors=True)  # left by an update killed before meta pointed at it
    os.replace(tmp, folder / name)
    fsync_path(folder)
    return name


class CodedRows:
    """Read side of ``coded-<rows>/`` (memory maps). Positions are offsets into the track-ordered copy."""

    def __init__(self, path: Path, rows: int, dim: int) -> None:
        self.rows, self.dim = rows, dim
        self.start = np.fromfile(path / START, np.int64)
        self.codes = np.memmap(path / CODES, np.uint8, "r", shape=(rows, dim))
        self.row = np.memmap(path / ROWS, np.int64, "r", shape=(rows,))
        self.sample_id = np.memmap(path / SAMPLE_IDS, np.int64, "r", shape=(rows,))
        self.low, self.step = np.fromfile(path / QUANTIZER, np.float32).reshape(2, dim)

    @classmethod
    def open(cls, path: Path, rows: int, dim: int) -> CodedRows | None:
        """The copy, or None when a file is missing or short (the search then scores the float32 rows)."""
        sizes = {CODES: rows * dim, ROWS: rows * 8, SAMPLE_IDS: rows * 8, QUANTIZER: 2 * dim * 4, START: 16}
        try:
            if any((path / f).stat().st_size < size for f, size in sizes.items()):
                return None
            coded = cls(path, rows, dim)
        except (OSError, ValueError):
            return None
        return coded if coded.start[-1] == rows else None

    def runs(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first position, length) of each given track's run (0 for tracks beyond the copy)."""
        ids = np.asarray(track_ids, np.int64)
        inside = ids < len(self.start) - 1
        first = np.zeros(len(ids), np.int64)
        length = np.zeros(len(ids), np.int64)
        first[inside] = self.start[ids[inside]]
        length[inside] = self.start[ids[inside] + 1] - first[inside]
        return first, length

    def bound(self, q: np.ndarray) -> float:
        """Largest |approximate - exact| cosine for the (D,) query: half a step per dimension, plus float32
        rounding of the sums."""
        return float(np.abs(q) @ self.step) * 0.5 * 1.001 + 1e-5

    def approx(self, positions: np.ndarray, q: np.ndarray) -> np.ndarray:
        """(len(positions),) float32 approximate cosines of the (D,) query with those codes."""
        out = np.empty(len(positions), np.float32)
        scaled, offset = (q * self.step).astype(np.float32), np.float32(q @ self.low)
        for a in range(0, len(positions), SCORE_CHUNK):  # 70k rows: 12 ms, against 29 ms in 32k-row blocks
            block = self.codes[positions[a:a + SCORE_CHUNK]]
            out[a:a + SCORE_CHUNK] = block.astype(np.float32) @ scaled + offset
        return out
