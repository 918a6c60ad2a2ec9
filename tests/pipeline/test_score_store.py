"""``python -m pipeline eval``: a store scored against the real PETS09-S2L1 ground truth (read from ../shared).

Perfect predictions are the ground truth itself written into a store (through TrackStore, then read back by
the export's box code), so a window or roi that is not applied shows up as misses or false positives.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.evaluation import MotBoxes, read_mot
from pipeline.score_store import CameraWindow, evaluate_store, restrict_ground_truth
from pipeline.types import Detections, Frame
from tests.pipeline.evaluation.test_mot import PETS, needs_pets
from tests.pipeline.store.test_store import make_store

REPO = Path(__file__).resolve().parents[2]
GT = PETS / "gt" / "gt.txt"
WIDTH, HEIGHT = 768, 576


def write_store(path: Path, cameras: dict[str, tuple[MotBoxes, dict]], link: bool = True) -> Path:
    """A store with one run whose config holds ``cameras`` {id: (boxes, camera config keys)}: every box a
    tracked box of its camera (local id = box id); with ``link``, one global identity per box id."""
    st = make_store(path)
    st.start_run({"cameras": [{"id": cam, "source": "vtest.avi", **keys} for cam, (_, keys) in cameras.items()]})
    identity: dict[int, int] = {}
    for cam, (boxes, _) in cameras.items():
        st.add_camera(cam, "vtest.avi", {"width": WIDTH, "height": HEIGHT, "frame_count": 795})
        image = np.zeros((4, 4, 3), np.uint8)
        for f in np.unique(boxes.frame):
            b = boxes[boxes.frame == f]
            xyxy = np.concatenate([b.xywh[:, :2], b.xywh[:, :2] + b.xywh[:, 2:]], axis=1)
            st.record_frame(Frame(cam, int(f) - 1, float(f), image), Detections.from_arrays(
                xyxy, np.ones(len(b)), track_id=b.id))
        st.end_tracks(cam, [int(i) for i in np.unique(boxes.id)])
        st.commit()
        if link:
            for t in st.reader.tracks(camera=cam):
                if t.local_id not in identity:
                    identity[t.local_id] = st.new_identity()
                st.assign_identity(t.id, identity[t.local_id], 1.0, "test")
    st.commit()
    st.close()
    return path


def clipped(gt: MotBoxes) -> MotBoxes:
    """The ground truth cut to the frame, as the export cuts predictions."""
    xyxy = np.concatenate([gt.xywh[:, :2], gt.xywh[:, :2] + gt.xywh[:, 2:]], axis=1)
    xyxy = np.clip(xyxy, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
    keep = ((xyxy[:, 2:] - xyxy[:, :2]) > 0).all(axis=1)
    return MotBoxes.from_xyxy(gt.frame[keep], gt.id[keep], xyxy[keep])


PERFECT = {"MOTA": 1.0, "IDF1": 1.0, "precision": 1.0, "recall": 1.0, "IDSW": 0}


@needs_pets
def test_ground_truth_scored_against_itself_is_perfect_per_camera_and_across_cameras(tmp_path):
    gt = clipped(read_mot(GT, ground_truth=True))
    north, south = CameraWindow(0, 400), CameraWindow(400, None)
    db = write_store(tmp_path / "gt.db", {
        "north": (restrict_ground_truth(gt, north), {"start_frame": 0, "end_frame": 400}),
        "south": (restrict_ground_truth(gt, south), {"start_frame": 400})})
    out = tmp_path / "eval"
    report = evaluate_store(db, {"north": GT, "south": GT}, out_dir=out)
    for cam in ("north", "south"):
        s = report["cameras"][cam]
        for key, value in PERFECT.items():
            assert s[key] == pytest.approx(value), (cam, key)
        assert s["HOTA"] > 0.99 and s["DetA"] > 0.99 and s["AssA"] > 0.99
    assert report["cameras"]["north"]["frames"] == 400
    assert report["cameras"]["south"]["start_frame"] == 400
    assert report["cameras"]["south"]["frames"] == 395  # frames 400-794 seen, not the last frame number
    g = report["global"]
    assert (g["IDF1"], g["IDP"], g["IDR"]) == (pytest.approx(1.0),) * 3
    assert g["cameras"] == 2 and g["gt_ids"] == len(np.unique(gt.id))
    assert json.loads((out / "metrics.json").read_text())["global"]["IDF1"] == pytest.approx(1.0)
    assert {p.name for p in out.glob("*.png")} == {"north_identity.png", "south_identity.png"}


@needs_pets
def test_unlinked_tracks_are_their_own_identities_in_the_global_score(tmp_path):
    gt = clipped(read_mot(GT, ground_truth=True))
    north, south = CameraWindow(0, 400), CameraWindow(400, None)
    db = write_store(tmp_path / "gt.db", {
        "north": (restrict_ground_truth(gt, north), {"end_frame": 400}),
        "south": (restrict_ground_truth(gt, south), {"start_frame": 400})}, link=False)
    report = evaluate_store(db, {"north": GT, "south": GT})
    assert report["cameras"]["north"]["IDF1"] == pytest.approx(1.0)  # local ids are perfect
    g = report["global"]
    # people on both cameras are split into two identities: IDF1 drops below 1 but stays high
    assert 0.5 < g["IDF1"] < 1.0
    assert g["pred_ids"] > g["gt_ids"]


@needs_pets
def test_start_frame_end_frame_and_roi_line_up_with_the_ground_truth(tmp_path):
    """A camera that saw source frames [100, 300) inside roi (0, 0, 400, 576): its perfect tracks score 1
    only when eval restricts the ground truth the same way."""
    gt = clipped(read_mot(GT, ground_truth=True))
    keys = {"start_frame": 100, "end_frame": 300, "roi": [0, 0, 400, 576]}
    seen = restrict_ground_truth(gt, CameraWindow(100, 300, 1, (0, 0, 400, 576)))
    in_window = ((gt.frame > 100) & (gt.frame <= 300)).sum()
    assert seen.frame.min() == 101 and seen.frame.max() == 300 and len(seen) < in_window
    db = write_store(tmp_path / "roi.db", {"left": (seen, keys)})
    s = evaluate_store(db, {"left": GT})["cameras"]["left"]
    for key, value in PERFECT.items():
        assert s[key] == pytest.approx(value), key
    assert (s["start_frame"], s["end_frame"], s["roi"]) == (100, 300, [0, 0, 400, 576])
    assert s["frames"] == 200  # frames seen, not the last frame number 300
    # the same boxes in a run whose config has no roi / no window: the rest of the ground truth is missed
    db2 = write_store(tmp_path / "full.db", {"left": (seen, {})})
    s2 = evaluate_store(db2, {"left": GT})["cameras"]["left"]
    assert s2["precision"] == pytest.approx(1.0) and s2["recall"] < 0.5


def test_frame_count_is_the_frames_a_camera_saw():
    assert CameraWindow(400, 795).frame_count(795) == 395
    assert CameraWindow(0, 100, stride=3).frame_count(100) == 34  # frames 0, 3, ..., 99
    assert CameraWindow(10, None).frame_count(50) == 40  # no known end: up to the last frame seen


@needs_pets
def test_eval_cli_errors_are_one_line(tmp_path, capsys):
    gt = clipped(read_mot(GT, ground_truth=True))
    db = write_store(tmp_path / "s.db", {"north": (gt[gt.frame <= 20], {"end_frame": 20})})
    cases = [
        (["--gt", f"east={GT}"], "unknown camera 'east' in --gt: the store's cameras are north"),
        (["--gt", f"north={tmp_path / 'nope.txt'}"], "ground-truth file not found"),
        (["--gt", f"north={GT}", "--run", "7"], "no run 7 in store"),
        (["--gt", "north"], "expected CAMERA=PATH"),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3,4,5,6,1\n2,x,3,4,5,6,1\n")
    cases.append((["--gt", f"north={bad}"], f"{bad}:2: non-numeric value"))
    for extra, message in cases:
        try:
            code = main(["eval", "--db", str(db), "--out", str(tmp_path / "o"), *extra])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, extra
        assert message in err and err.count("\n") == 1, err


@needs_pets
def test_eval_does_not_import_torch_or_ultralytics(tmp_path):
    gt = clipped(read_mot(GT, ground_truth=True))
    db = write_store(tmp_path / "s.db", {"north": (gt[gt.frame <= 30], {"end_frame": 30})})
    code = ("import sys\nfrom pipeline.cli import main\n"
            f"rc = main(['eval', '--db', {str(db)!r}, '--gt', 'north={GT}', '--out', {str(tmp_path / 'o')!r}])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ultralytics', 'torchvision'))\n"
            "print('HEAVY', heavy, 'RC', rc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "HEAVY [] RC 0" in out.stdout, out.stdout + out.stderr
    assert "IDF1" in out.stdout


@pytest.mark.slow
@needs_pets
def test_eval_cli_on_the_demo_run(demo_run, tmp_path, capsys):
    """The shared real run (north frames 340-400, south 400-460) scored by the CLI against the real GT."""
    out = tmp_path / "eval"
    code = main(["eval", "--db", str(demo_run.db), "--gt", f"north={GT}", "--gt", f"south={GT}", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    for word in ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "precision", "recall", "north", "south",
                 "global identities", "IDP", "IDR"):
        assert word in text
    report = json.loads((out / "metrics.json").read_text())
    for cam, (start, end) in (("north", (340, 400)), ("south", (400, 460))):
        s = report["cameras"][cam]
        assert (s["start_frame"], s["end_frame"]) == (start, end)
        assert s["frames"] == end - start  # frames the camera saw, not the last source frame number
        assert s["gt_dets"] == len(restrict_ground_truth(read_mot(GT, ground_truth=True), CameraWindow(start, end)))
        assert 0.2 < s["recall"] <= 1 and 0 < s["IDF1"] <= 1 and s["pred_ids"] >= 1
    assert 0 < report["global"]["IDF1"] <= 1
    from pipeline.access import audit

    row = audit.read(demo_run.db, action="evaluate")[-1]
    assert row.details == {"run": report["run"], "gt": {"north": str(GT), "south": str(GT)}, "out": str(out),
                           "idf1": report["global"]["IDF1"]}
    assert (out / "north_identity.png").stat().st_size > 10_000 and (out / "south_identity.png").is_file()
