"""Tracking scores (HOTA, CLEAR MOT, identity) of predicted boxes against ground truth, by TrackEval.

The boxes are turned into TrackEval's per-sequence data (contiguous ids per sequence, IoU similarity
per frame, as its MOTChallenge loader prepares it) and TrackEval's metric classes are called directly;
no files or benchmark runner are involved. Matching threshold: IoU 0.5 (MOTChallenge).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.evaluation.mot import MotBoxes, MotFormatError

__all__ = ["concatenate_cameras", "score_camera", "score_global", "trackeval_data"]


def _metrics(threshold: float):
    from trackeval.metrics import CLEAR, HOTA, Identity

    config = {"THRESHOLD": float(threshold), "PRINT_CONFIG": False}
    return HOTA(), CLEAR(config), Identity(config)


def _by_frame(boxes: MotBoxes, num_frames: int) -> list[np.ndarray]:
    """Row indices of ``boxes`` for each frame 1..num_frames."""
    order = np.argsort(boxes.frame, kind="stable")
    bounds = np.searchsorted(boxes.frame[order], np.arange(1, num_frames + 2))
    return [order[bounds[t]:bounds[t + 1]] for t in range(num_frames)]


def trackeval_data(gt: MotBoxes, pred: MotBoxes, num_frames: int | None = None) -> dict:
    """TrackEval's per-sequence ``data`` dict for one sequence.

    gt, pred: boxes with 1-based frames; timestep t holds frame t + 1.
    num_frames: sequence length (default: the last frame of either).
    """
    gt.check_unique("ground truth")
    pred.check_unique("predictions")
    from trackeval.datasets._base_dataset import _BaseDataset

    last = max(gt.last_frame, pred.last_frame)
    num_frames = last if num_frames is None else int(num_frames)
    if num_frames < last:
        raise MotFormatError(f"boxes up to frame {last} but the sequence has {num_frames} frames")
    gt_uid, gt_lab = np.unique(gt.id, return_inverse=True)
    pr_uid, pr_lab = np.unique(pred.id, return_inverse=True)
    data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [], "num_timesteps": num_frames,
            "num_gt_ids": len(gt_uid), "num_tracker_ids": len(pr_uid), "num_gt_dets": len(gt),
            "num_tracker_dets": len(pred)}
    for g, p in zip(_by_frame(gt, num_frames), _by_frame(pred, num_frames)):
        data["gt_ids"].append(gt_lab.reshape(-1)[g])
        data["tracker_ids"].append(pr_lab.reshape(-1)[p])
        data["similarity_scores"].append(_BaseDataset._calculate_box_ious(gt.xywh[g], pred.xywh[p], box_format="xywh"))
    return data


def score_camera(gt: MotBoxes, pred: MotBoxes, iou_threshold: float = 0.5, num_frames: int | None = None) -> dict:
    """Scores of one camera's predicted tracks against its ground truth.

    Returns floats HOTA, DetA, AssA, LocA (averaged over TrackEval's IoU thresholds 0.05..0.95), MOTA,
    MOTP, IDF1, IDP, IDR, precision, recall (CLEAR, at ``iou_threshold``) and ints IDSW, Frag, MT, ML,
    TP, FP, FN, IDTP, IDFP, IDFN, gt_dets, pred_dets, gt_ids, pred_ids, frames.
    """
    data = trackeval_data(gt, pred, num_frames)
    hota, clear, identity = _metrics(iou_threshold)
    h, c, i = hota.eval_sequence(data), clear.eval_sequence(data), identity.eval_sequence(data)
    out = {key: float(np.mean(h[key])) for key in ("HOTA", "DetA", "AssA", "LocA")}
    out.update(MOTA=float(c["MOTA"]), MOTP=float(c["MOTP"]), IDF1=float(i["IDF1"]), IDP=float(i["IDP"]),
               IDR=float(i["IDR"]), precision=float(c["CLR_Pr"]), recall=float(c["CLR_Re"]))
    out.update({k: int(c[k]) for k in ("IDSW", "Frag", "MT", "ML")})
    out.update(TP=int(c["CLR_TP"]), FP=int(c["CLR_FP"]), FN=int(c["CLR_FN"]),
               IDTP=int(i["IDTP"]), IDFP=int(i["IDFP"]), IDFN=int(i["IDFN"]))
    out.update(gt_dets=data["num_gt_dets"], pred_dets=data["num_tracker_dets"], gt_ids=data["num_gt_ids"],
               pred_ids=data["num_tracker_ids"], frames=data["num_timesteps"])
    return out


def concatenate_cameras(boxes: Mapping[str, MotBoxes], spans: Mapping[str, int]) -> MotBoxes:
    """One sequence of several cameras: camera k's frames follow camera k-1's (order of ``spans``).

    spans: frames reserved per camera (at least its last frame).
    """
    parts, offset = [], 0
    for cam, span in spans.items():
        part = boxes.get(cam, MotBoxes.empty())
        if part.last_frame > span:
            raise ValueError(f"camera {cam!r} has frame {part.last_frame} beyond its span {span}")
        parts.append(part.shifted(offset))
        offset += int(span)
    return MotBoxes(np.concatenate([p.frame for p in parts]), np.concatenate([p.id for p in parts]),
                    np.concatenate([p.xywh for p in parts]).reshape(-1, 4))


def score_global(gt: Mapping[str, MotBoxes], pred: Mapping[str, MotBoxes], iou_threshold: float = 0.5) -> dict:
    """Multi-camera identity scores, the AI City Challenge (MTMC) way.

    gt: per camera ground truth whose ids name the same person in every camera.
    pred: per camera predictions whose ids are global identities (a camera may be missing: no boxes).
    The cameras are scored as one sequence with disjoint frame ranges, so a predicted identity earns
    IDTP only where it follows the same person across cameras. Returns :func:`score_camera`'s keys
    for the joint sequence (IDF1, IDP, IDR, HOTA, AssA... are the cross-camera figures) plus
    ``cameras`` (the number of cameras).
    """
    unknown = sorted(set(pred) - set(gt))
    if unknown:
        raise ValueError(f"predictions for cameras {unknown} that have no ground truth (known: {sorted(gt)})")
    if not gt:
        raise ValueError("score_global needs at least one camera")
    cams = sorted(gt)
    spans = {c: max(gt[c].last_frame, pred[c].last_frame if c in pred else 0) for c in cams}
    out = score_camera(concatenate_cameras(gt, spans), concatenate_cameras(pred, spans), iou_threshold)
    out["cameras"] = len(cams)
    return out
