"""Result figures: CMC curves (matplotlib, Agg canvas) and ranked-gallery grids (numpy + OpenCV).

The identities sheet (one row of images per identity) helps to spot two ids that are one person.
The ranked grid looks like the papers' qualitative figures: one row per query, the query image
on the left (blue frame), then its top-k gallery images by increasing distance, framed green
when they show the query's identity and red when not. Gallery samples that the Market-1501
protocol ignores (same identity in the query's camera, junk pid -1) are left out, exactly as in
:func:`reid_models.metrics.evaluate_rank`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .metrics import JUNK_PID

CORRECT_RGB = (0, 200, 0)
WRONG_RGB = (230, 0, 0)
QUERY_RGB = (40, 90, 230)
BORDER = 4  # frame width, pixels
_GAP, _QUERY_GAP, _HEADER = 4, 16, 16  # pixels between cells, after the query, above each row


def plot_cmc(curves: Mapping[str, np.ndarray], path: str | Path, max_rank: int = 20) -> Path:
    """Write CMC curves to a PNG (600 x 450 px) and return its path.

    curves: name -> (R,) CMC as fractions in [0, 1] (``evaluate_rank``'s first output), e.g.
    {"bot_r50": cmc, "bot_r50 + re-ranking": cmc_rr}. The first ``max_rank`` ranks are drawn;
    the legend shows each curve's Rank-1.
    """
    if not curves:
        raise ValueError("plot_cmc needs at least one curve")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=np.float64)
        if cmc.ndim != 1 or cmc.size == 0 or not np.all((cmc >= 0) & (cmc <= 1)):
            raise ValueError(f"CMC curve {name!r} must be a non-empty 1-D array of fractions in [0, 1] "
                             "(as returned by evaluate_rank)")
        ranks = np.arange(1, min(max_rank, cmc.size) + 1)
        ax.plot(ranks, 100.0 * cmc[: ranks.size], marker="o", markersize=3,
                label=f"{name} (Rank-1 {100.0 * cmc[0]:.1f}%)")
    ax.set_xlabel("Rank")
    ax.set_ylabel("Matching rate (%)")
    ax.set_title("CMC")
    ax.set_xlim(0.5, max_rank + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _read_rgb(path: str, role: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB; missing or undecodable file -> clear error naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{role} image not found: {path} (are the dataset paths still valid?)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode {role} image {path} (corrupt or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _framed(img: np.ndarray, size: tuple[int, int], color: tuple[int, int, int]) -> np.ndarray:
    """Image resized to size (H, W) inside a BORDER-px frame: (H + 2B, W + 2B, 3) uint8."""
    h, w = size
    out = np.empty((h + 2 * BORDER, w + 2 * BORDER, 3), dtype=np.uint8)
    out[:] = color
    out[BORDER:BORDER + h, BORDER:BORDER + w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return out


def _write_rgb(canvas: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 RGB canvas as a PNG (creating its folder); OSError if it cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def _label(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)


def plot_ranked_results(query_paths: Sequence[str], gallery_paths: Sequence[str], distmat: np.ndarray,
                        q_pids, g_pids, q_camids, g_camids, path: str | Path, top: int = 10,
                        n_queries: int = 5, query_indices: Sequence[int] | None = None,
                        cell_size: tuple[int, int] = (128, 64)) -> Path:
    """Write a PNG grid of the top-``top`` gallery images for a few queries and return its path.

    query_paths (Q,), gallery_paths (G,): image files; distmat (Q, G); q_pids, q_camids (Q,);
    g_pids, g_camids (G,). Rows: ``query_indices`` if given, else ``n_queries`` queries spread
    evenly over those with a correct match in the gallery (evaluated queries). cell_size: (H, W)
    pixels each image is resized to. Correct matches are framed green, wrong ones red.
    """
    distmat = np.asarray(distmat)
    num_q, num_g = distmat.shape if distmat.ndim == 2 else (-1, -1)
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    if (num_q < 0 or len(query_paths) != num_q or len(gallery_paths) != num_g or q_pids.shape != (num_q,)
            or q_camids.shape != (num_q,) or g_pids.shape != (num_g,) or g_camids.shape != (num_g,)):
        raise ValueError(f"plot_ranked_results: distmat {distmat.shape} must be (Q, G) with Q = {len(query_paths)} "
                         f"query paths/pids/camids and G = {len(gallery_paths)} gallery paths/pids/camids")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")

    def ranked(q: int) -> np.ndarray:
        """Gallery indices the protocol keeps for query q, nearest first."""
        order = np.argsort(distmat[q], kind="stable")
        drop = (g_pids[order] == JUNK_PID) | ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        return order[~drop]

    if query_indices is None:
        valid = [q for q in range(num_q) if q_pids[q] != JUNK_PID
                 and np.any((g_pids == q_pids[q]) & (g_camids != q_camids[q]))]
        if not valid:
            raise ValueError("no query has a correct match in the gallery; nothing to show")
        picks = np.unique(np.linspace(0, len(valid) - 1, min(n_queries, len(valid))).round().astype(int))
        query_indices = [valid[i] for i in picks]
    query_indices = [int(q) for q in query_indices]
    if not query_indices or any(not 0 <= q < num_q for q in query_indices):
        raise ValueError(f"query_indices must be a non-empty list of indices in [0, {num_q})")

    cell_h, cell_w = cell_size
    frame_h, frame_w = cell_h + 2 * BORDER, cell_w + 2 * BORDER
    row_h = _HEADER + frame_h + _GAP
    width = _GAP + frame_w + _QUERY_GAP + top * (frame_w + _GAP)
    canvas = np.full((len(query_indices) * row_h + _GAP, width, 3), 255, dtype=np.uint8)
    for r, q in enumerate(query_indices):
        y = r * row_h + _HEADER
        canvas[y:y + frame_h, _GAP:_GAP + frame_w] = _framed(_read_rgb(query_paths[q], "query"), cell_size, QUERY_RGB)
        _label(canvas, f"query {int(q_pids[q])}", _GAP, y - 5)
        x = _GAP + frame_w + _QUERY_GAP
        for rank, g in enumerate(ranked(q)[:top], start=1):
            color = CORRECT_RGB if g_pids[g] == q_pids[q] else WRONG_RGB
            canvas[y:y + frame_h, x:x + frame_w] = _framed(_read_rgb(gallery_paths[g], "gallery"), cell_size, color)
            _label(canvas, str(rank), x + frame_w // 2 - 4, y - 5)
            x += frame_w + _GAP
    return _write_rgb(canvas, path)


def plot_identities(paths: Sequence[str], pids, camids, path: str | Path, per_identity: int = 8,
                    max_identities: int = 40, cell_size: tuple[int, int] = (128, 64)) -> Path:
    """Write a PNG with one row per identity: ``per_identity`` of its images spread over its cameras (in
    camera order) under a header "id P  cams a-b  n images"; return its path. For spotting ids that are
    one person (MOT ground truth gives a person who comes back a new id).

    paths (N,): image files; pids, camids (N,) int. Junk (pid -1) is left out; at most
    ``max_identities`` rows (the smallest pids; the first header then says how many there are).
    """
    pids, camids = np.asarray(pids), np.asarray(camids)
    if pids.shape != (len(paths),) or camids.shape != (len(paths),):
        raise ValueError(f"plot_identities: {len(paths)} paths need as many pids and camids, "
                         f"got {pids.shape} and {camids.shape}")
    if per_identity < 1 or max_identities < 1:
        raise ValueError(f"per_identity and max_identities must be >= 1, got {per_identity}, {max_identities}")
    ids = [int(p) for p in np.unique(pids) if p != JUNK_PID]
    if not ids:
        raise ValueError("plot_identities: no identity to show (every pid is -1 or the list is empty)")
    shown = ids[:max_identities]
    cell_h, cell_w = cell_size
    frame_h, frame_w = cell_h + 2 * BORDER, cell_w + 2 * BORDER
    row_h = _HEADER + frame_h + _GAP
    canvas = np.full((len(shown) * row_h + _GAP, _GAP + per_identity * (frame_w + _GAP), 3), 255, dtype=np.uint8)
    for r, pid in enumerate(shown):
        mine = np.flatnonzero(pids == pid)
        mine = mine[np.lexsort(([str(paths[i]) for i in mine], camids[mine]))]
        pick = mine[np.unique(np.linspace(0, len(mine) - 1, min(per_identity, len(mine))).round().astype(int))]
        y = r * row_h + _HEADER
        more = f"  ({len(shown)} of {len(ids)} identities)" if r == 0 and len(shown) < len(ids) else ""
        _label(canvas, f"id {pid}  cams {int(camids[mine].min())}-{int(camids[mine].max())}  "
                       f"{len(mine)} images{more}", _GAP, y - 5)
        for c, i in enumerate(pick):
            x = _GAP + c * (frame_w + _GAP)
            canvas[y:y + frame_h, x:x + frame_w] = _framed(_read_rgb(paths[i], "gallery"), cell_size, (255, 255, 255))
    return _write_rgb(canvas, path)
