"""pipeline.evaluation: MOT files, TrackEval scores with hand-computed answers, frame ranges, plots."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation import (
    MotBoxes,
    MotFormatError,
    camera_ground_truth,
    frame_matches,
    plot_cameras,
    plot_identity_errors,
    read_mot,
    score_camera,
    score_global,
)

REPO = Path(__file__).resolve().parents[3]


def main_checkout(repo: Path) -> Path:
    """The main checkout of ``repo`` (itself, or the repository a git worktree belongs to)."""
    git = repo / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().split("gitdir:", 1)[-1].strip())
        return gitdir.parents[2] if gitdir.parent.name == "worktrees" else repo
    return repo


# ../shared/data/mot15 beside the repository (beside the main checkout when run from a git worktree)
PETS = main_checkout(REPO).parent / "shared" / "data" / "mot15" / "PETS09-S2L1"
needs_pets = pytest.mark.skipif(not (PETS / "gt" / "gt.txt").is_file(),
                                reason=f"MOTChallenge PETS09-S2L1 ground truth not found at {PETS} "
                                       f"(CC BY-NC-SA, kept outside the repo; see data/mot15/README.md)")


def two_walkers(frames: int = 10) -> MotBoxes:
    """Ground truth: person 7 walks right along y=100, person 9 along y=300, both in frames 1..frames."""
    f = np.repeat(np.arange(1, frames + 1), 2)
    ids = np.tile([7, 9], frames)
    x = 10.0 * f
    y = np.where(ids == 7, 100.0, 300.0)
    return MotBoxes(f, ids, np.stack([x, y, np.full_like(x, 30), np.full_like(x, 80)], axis=1))


def test_perfect_tracks_score_one_everywhere():
    gt = two_walkers()
    pred = MotBoxes(gt.frame, np.where(gt.id == 7, 1, 2), gt.xywh)  # other labels, same people
    s = score_camera(gt, pred)
    for key in ("HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1", "IDP", "IDR", "precision", "recall"):
        assert s[key] == pytest.approx(1.0), key
    assert (s["IDSW"], s["FP"], s["FN"], s["TP"]) == (0, 0, 0, 20)


def test_id_swap_costs_what_the_definitions_say():
    gt = two_walkers(10)
    # tracker ids 1 (on 7) and 2 (on 9) swap people from frame 7 on
    swapped = gt.frame >= 7
    pred = MotBoxes(gt.frame, np.where((gt.id == 7) ^ swapped, 1, 2), gt.xywh)
    s = score_camera(gt, pred)
    # CLEAR: every box matched (TP 20, FP 0, FN 0); both people change tracker id once at frame 7
    assert (s["TP"], s["FP"], s["FN"], s["IDSW"]) == (20, 0, 0, 2)
    assert s["MOTA"] == pytest.approx((20 - 0 - 2) / 20)
    # IDF1: best one-to-one pairing is 7<->1 and 9<->2, each agreeing on frames 1-6 -> IDTP 12 of 20
    assert (s["IDTP"], s["IDFP"], s["IDFN"]) == (12, 8, 8)
    assert s["IDF1"] == pytest.approx(2 * 12 / (20 + 20))
    # HOTA: detection perfect at every IoU threshold; association per TP = TPA / (TPA + FNA + FPA):
    # frames 1-6 pair (7,1): 6 / (6 + 4 + 4); frames 7-10 pair (7,2): 4 / (4 + 6 + 6); same for person 9
    ass = (12 * 6 / 14 + 8 * 4 / 16) / 20
    assert s["DetA"] == pytest.approx(1.0)
    assert s["AssA"] == pytest.approx(ass)
    assert s["HOTA"] == pytest.approx(math.sqrt(ass))


def test_misses_and_false_positives_count_in_mota():
    gt = two_walkers(10)
    keep = ~((gt.id == 9) & (gt.frame > 8))  # person 9 missed in frames 9, 10
    pred = MotBoxes(np.append(gt.frame[keep], 3), np.append(gt.id[keep], 50),
                    np.vstack([gt.xywh[keep], [[600, 500, 30, 80]]]))  # one box on nobody in frame 3
    s = score_camera(gt, pred)
    assert (s["TP"], s["FP"], s["FN"], s["IDSW"]) == (18, 1, 2, 0)
    assert s["MOTA"] == pytest.approx((18 - 1 - 0) / 20)
    assert s["recall"] == pytest.approx(18 / 20) and s["precision"] == pytest.approx(18 / 19)
    assert s["IDF1"] == pytest.approx(2 * 18 / (20 + 19))


def test_boxes_below_iou_half_are_misses():
    gt = two_walkers(4)
    shifted = gt.xywh + [20, 0, 0, 0]  # 30 px wide box moved by 20 px: IoU = 10 / 50 = 0.2
    s = score_camera(gt, MotBoxes(gt.frame, gt.id, shifted))
    assert (s["TP"], s["FP"], s["FN"]) == (0, 8, 8)
    assert s["MOTA"] == pytest.approx(-8 / 8)


def test_read_mot_ground_truth_and_results(tmp_path):
    f = tmp_path / "gt.txt"
    f.write_text("1,3,10,20,30,40,1,-1,-1,-1\n1,4,50,20,30,40,0,-1,-1,-1\n\n2 3 11 20 30 40 1 -1 -1 -1\n")
    gt = read_mot(f, ground_truth=True)
    assert gt.frame.tolist() == [1, 2] and gt.id.tolist() == [3, 3]  # the row flagged 0 is ignored
    assert gt.xywh.tolist() == [[10, 20, 30, 40], [11, 20, 30, 40]]
    assert len(read_mot(f)) == 3  # a result file keeps every row
    f.write_text("1,1,0,0,5,5,1,1,0\n1,2,0,0,5,5,1,7,0\n")  # MOT17 style: 8th column = class
    assert read_mot(f, ground_truth=True, person_class=1).id.tolist() == [1]
    f.write_text("")
    assert len(read_mot(f)) == 0


@pytest.mark.parametrize("text, message", [
    ("1,1,10,20,30\n", "5 columns, need at least 6"),
    ("1,1,10,20,30,40\n1,x,1,1,1,1\n", ":2: non-numeric"),
    ("0,1,10,20,30,40\n", "frame 0 < 1"),
    ("1.5,1,10,20,30,40\n", "must be integers"),
    ("1,1,10,20,-3,40\n", "negative width"),
    ("2,1,10,20,30,40\n2,1,50,20,30,40\n", "id 1 appears more than once in frame 2"),
])
def test_malformed_file_is_one_clear_line(tmp_path, text, message):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(MotFormatError) as err:
        read_mot(f)
    assert message in str(err.value) and str(f) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_short_ground_truth(tmp_path):
    with pytest.raises(MotFormatError, match="cannot read MOT file"):
        read_mot(tmp_path / "nope.txt")
    (tmp_path / "gt.txt").write_text("1,1,10,20,30,40\n")
    with pytest.raises(MotFormatError, match="need at least 7"):
        read_mot(tmp_path / "gt.txt", ground_truth=True)


def test_bad_arrays_are_rejected():
    with pytest.raises(MotFormatError, match="1-based"):
        MotBoxes([0], [1], [[0, 0, 1, 1]])
    with pytest.raises(MotFormatError, match=r"xywh \(N, 4\)"):
        MotBoxes([1, 2], [1, 1], [[0, 0, 1, 1]])
    dup = MotBoxes([1, 1], [5, 5], [[0, 0, 1, 1], [5, 5, 1, 1]])
    with pytest.raises(MotFormatError, match="predictions: id 5 appears more than once in frame 1"):
        score_camera(two_walkers(1), dup)


def test_camera_ground_truth_uses_source_frame_ranges():
    gt = two_walkers(10)
    cam = camera_ground_truth(gt, start_frame=3, end_frame=7)  # source frames 3..6 = MOT frames 4..7
    assert sorted(set(cam.frame.tolist())) == [4, 5, 6, 7]
    # what the store exports for those source frames (frame index + 1) scores 1.0 against it
    source_index = np.arange(3, 7)
    rows = np.isin(gt.frame, source_index + 1)
    exported = MotBoxes(gt.frame[rows], gt.id[rows], gt.xywh[rows])
    assert score_camera(cam, exported)["IDF1"] == pytest.approx(1.0)
    # but is missing 3/5 of the whole clip when scored against all of it
    assert score_camera(gt, exported)["recall"] == pytest.approx(8 / 20)
    roi = camera_ground_truth(gt, roi=(0, 0, 800, 200))  # only person 7 (y 100..180) has its centre inside
    assert set(roi.id.tolist()) == {7}
    with pytest.raises(ValueError, match="bad camera frame range"):
        camera_ground_truth(gt, 5, 5)


def test_global_score_follows_people_across_cameras():
    gt_a, gt_b = two_walkers(6), two_walkers(4)  # the same two people seen by cameras a then b
    gt = {"a": gt_a, "b": gt_b}
    same = {"a": MotBoxes(gt_a.frame, gt_a.id + 100, gt_a.xywh), "b": MotBoxes(gt_b.frame, gt_b.id + 100, gt_b.xywh)}
    s = score_global(gt, same)
    assert s["IDF1"] == pytest.approx(1.0) and s["cameras"] == 2 and s["frames"] == 10
    # camera b gives both people new identities: each person's best identity covers its 6 boxes in a
    split = {"a": same["a"], "b": MotBoxes(gt_b.frame, gt_b.id + 200, gt_b.xywh)}
    s = score_global(gt, split)
    assert (s["IDTP"], s["IDFP"], s["IDFN"]) == (12, 8, 8) and s["IDF1"] == pytest.approx(12 / 20)
    # ... while each camera alone is perfect
    assert score_camera(gt_b, split["b"])["IDF1"] == pytest.approx(1.0)
    assert score_global(gt, {"a": same["a"]})["IDR"] == pytest.approx(12 / 20)  # camera b predicted nothing
    with pytest.raises(ValueError, match="no ground truth"):
        score_global(gt, {"c": gt_a})


def test_identity_plot_marks_the_swap(tmp_path):
    gt = two_walkers(10)
    pred = MotBoxes(gt.frame, np.where((gt.id == 7) ^ (gt.frame >= 7), 1, 2), gt.xywh)
    matched = frame_matches(gt, pred[pred.frame != 2])  # nothing predicted in frame 2
    assert matched[gt.frame == 2].tolist() == [-1, -1]
    assert matched[(gt.id == 7) & (gt.frame >= 7)].tolist() == [2] * 4
    png = plot_identity_errors(gt, pred, tmp_path / "cam.png", title="cam")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = plot_cameras({"a": gt, "b": gt}, {"a": pred}, tmp_path / "plots")
    assert sorted(p.name for p in paths.values()) == ["a_identity.png", "b_identity.png"]


@needs_pets
def test_real_ground_truth_scores_one_against_itself():
    gt = read_mot(PETS / "gt" / "gt.txt", ground_truth=True)
    raw = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",")
    assert len(gt) == int((raw[:, 6] != 0).sum()) < len(raw)  # TrackEval's MOT15 rule: drop rows flagged 0
    assert (gt.frame.min(), gt.frame.max(), len(np.unique(gt.id))) == (1, 795, 19)
    s = score_camera(gt, gt)
    assert (s["HOTA"], s["MOTA"], s["IDF1"], s["IDSW"]) == (1.0, 1.0, 1.0, 0)
    # the demo's two cameras (north = source frames 0-399, south = 400-794), no cross-camera link:
    # each person's best global identity covers only its longer camera stretch
    north, south = camera_ground_truth(gt, 0, 400), camera_ground_truth(gt, 400)
    assert len(north) + len(south) == len(gt) and south.frame.min() == 401
    pred = {"north": north, "south": MotBoxes(south.frame, south.id + 1000, south.xywh)}
    ids = np.unique(gt.id)
    best = sum(max((north.id == i).sum(), (south.id == i).sum()) for i in ids)
    s = score_global({"north": north, "south": south}, pred)
    assert s["IDF1"] == pytest.approx(best / len(gt)) and s["IDF1"] < 1.0
    dets = read_mot(PETS / "det" / "det.txt")  # public detections: ids all -1
    assert len(dets) > 4000 and set(dets.id.tolist()) == {-1}
