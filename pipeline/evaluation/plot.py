"""Pictures of where identity errors happen along a camera's timeline."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.evaluation.mot import MotBoxes

__all__ = ["frame_matches", "plot_identity_errors", "plot_cameras"]


def frame_matches(gt: MotBoxes, pred: MotBoxes, iou_threshold: float = 0.5) -> np.ndarray:
    """(len(gt),) int64: the predicted id matched to each ground-truth box, -1 where missed.

    Per frame, a one-to-one assignment maximising total IoU among pairs with IoU >= iou_threshold
    (the plot's matching; the scores themselves come from TrackEval).
    """
    from scipy.optimize import linear_sum_assignment
    from trackeval.datasets._base_dataset import _BaseDataset

    matched = np.full(len(gt), -1, np.int64)
    for f in np.unique(gt.frame):
        g = np.flatnonzero(gt.frame == f)
        p = np.flatnonzero(pred.frame == f)
        if not len(p):
            continue
        iou = _BaseDataset._calculate_box_ious(gt.xywh[g], pred.xywh[p], box_format="xywh")
        iou[iou < iou_threshold - np.finfo(float).eps] = 0
        rows, cols = linear_sum_assignment(-iou)
        ok = iou[rows, cols] > 0
        matched[g[rows[ok]]] = pred.id[p[cols[ok]]]
    return matched


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges of equal consecutive values."""
    cuts = np.flatnonzero(np.diff(values) != 0) + 1
    edges = np.concatenate([[0], cuts, [len(values)]])
    return list(zip(edges[:-1], edges[1:]))


def plot_identity_errors(gt: MotBoxes, pred: MotBoxes, out_png: str | Path, title: str = "",
                         iou_threshold: float = 0.5) -> Path:
    """Write a PNG: one row per ground-truth id over frames (x), coloured by the matched predicted id.

    Grey = missed (no prediction at IoU >= iou_threshold), black tick = identity switch (the matched
    predicted id differs from the one last matched to this person), bottom panel = unmatched predicted
    boxes (false positives) per frame. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    matched = frame_matches(gt, pred, iou_threshold)
    gt_ids = np.unique(gt.id)
    cmap = plt.get_cmap("tab20")
    pred_ids = np.unique(matched[matched >= 0])
    colour_of = {int(p): cmap(k % 20) for k, p in enumerate(pred_ids)}
    height = max(3.0, 0.28 * len(gt_ids) + 1.6)
    fig, (ax, ax_fp) = plt.subplots(2, 1, figsize=(12, height), sharex=True,
                                    gridspec_kw={"height_ratios": [max(1, len(gt_ids)), 2.5]})
    switches = 0
    for row, gid in enumerate(gt_ids):
        idx = np.flatnonzero(gt.id == gid)
        idx = idx[np.argsort(gt.frame[idx])]
        frames, ids = gt.frame[idx], matched[idx]
        # split where the id changes or the person is absent for a frame
        segment = np.cumsum(np.concatenate([[0], np.diff(frames) > 1]))
        key = segment * (1 << 32) + ids
        for a, b in _runs(key):
            colour = "0.82" if ids[a] < 0 else colour_of[int(ids[a])]
            ax.broken_barh([(frames[a] - 0.5, frames[b - 1] - frames[a] + 1)], (row - 0.4, 0.8), color=colour)
        last = -1
        for f, p in zip(frames, ids):
            if p < 0:
                continue
            if last >= 0 and p != last:
                ax.plot([f - 0.5, f - 0.5], [row - 0.5, row + 0.5], color="black", lw=1.5)
                switches += 1
            last = p
    ax.set_yticks(range(len(gt_ids)))
    ax.set_yticklabels([str(g) for g in gt_ids], fontsize=7)
    ax.set_ylabel("ground-truth id")
    ax.set_ylim(-0.6, len(gt_ids) - 0.4)
    ax.set_title(f"{title + ': ' if title else ''}colour = matched predicted id, grey = missed, "
                 f"black = identity switch ({switches})", fontsize=9)
    # false positives per frame: predicted boxes of that frame that matched no ground truth
    last_frame = max(gt.last_frame, pred.last_frame, 1)
    n_pred = np.bincount(pred.frame, minlength=last_frame + 1)
    n_hit = np.bincount(gt.frame[matched >= 0], minlength=last_frame + 1)
    frames_axis = np.arange(last_frame + 1)
    ax_fp.fill_between(frames_axis, n_pred - n_hit, step="mid", color="tab:red", alpha=0.7)
    ax_fp.set_ylabel("false pos.", fontsize=8)
    ax_fp.set_xlabel("frame (1-based, MOTChallenge)")
    first = int(min(gt.frame.min() if len(gt) else last_frame, pred.frame.min() if len(pred) else last_frame))
    ax_fp.set_xlim(first - 1, last_frame + 1)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_cameras(gt: Mapping[str, MotBoxes], pred: Mapping[str, MotBoxes], out_dir: str | Path,
                 iou_threshold: float = 0.5) -> dict[str, Path]:
    """:func:`plot_identity_errors` for each camera of ``gt``: ``out_dir/<camera>_identity.png``."""
    out_dir = Path(out_dir)
    return {cam: plot_identity_errors(gt[cam], pred.get(cam, MotBoxes.empty()), out_dir / f"{cam}_identity.png",
                                      title=cam, iou_threshold=iou_threshold) for cam in gt}
