"""``python -m pipeline``: query and export on a real store, one-line errors for bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main, time_argument
from pipeline.config import StoreConfig
from pipeline.store import StoreReader, TrackStore

REPO = Path(__file__).resolve().parents[3]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for w in words:
        assert w in err, err


def test_run_with_missing_cams_file(tmp_path):
    proc = _cli("run", "--cameras", str(tmp_path / "nope.yaml"))
    _assert_one_line_error(proc, "nope.yaml", "not found")


def test_run_with_unknown_yaml_key(make_demo_yaml, tmp_path):
    cams = make_demo_yaml(tmp_path / "cams.yaml", colour="red")
    proc = _cli("run", "--cameras", str(cams))
    _assert_one_line_error(proc, "colour", "unknown key")


def test_query_with_missing_db(tmp_path):
    image = tmp_path / "q.jpg"
    cv2.imwrite(str(image), np.zeros((64, 32, 3), np.uint8))
    proc = _cli("query", "--db", str(tmp_path / "none.db"), "--image", str(image))
    _assert_one_line_error(proc, "none.db")


@pytest.mark.slow
def test_query_with_unreadable_image(demo_run, tmp_path):
    bad = tmp_path / "suspect.jpg"
    bad.write_bytes(b"this is not a JPEG")
    proc = _cli("query", "--db", str(demo_run.db), "--image", str(bad))
    _assert_one_line_error(proc, "suspect.jpg", "cannot read")
    proc = _cli("query", "--db", str(demo_run.db), "--image", str(tmp_path / "absent.jpg"))
    _assert_one_line_error(proc, "absent.jpg", "not found")


@pytest.mark.slow
def test_query_with_an_empty_time_window(demo_run, vtest_path):
    proc = _cli("query", "--db", str(demo_run.db), "--image", str(vtest_path.parent / "suspect.jpg"),
                "--since", "2024-05-01T10:01:00Z", "--until", "2024-05-01T10:00:00Z")
    _assert_one_line_error(proc, "--since", "--until")


def test_bad_arguments_are_one_line_too():
    proc = _cli("export", "--db", "x.db", "--format", "csv", "--out", "o")
    _assert_one_line_error(proc, "csv")
    proc = _cli("query", "--db", "x.db", "--image", "q.jpg", "--since", "yesterday")
    _assert_one_line_error(proc, "yesterday", "ISO-8601")


def test_time_argument_accepts_iso_and_epoch():
    assert time_argument("2024-05-01T10:00:30Z") == 1714557630.0
    assert time_argument("2024-05-01T12:00:30+02:00") == 1714557630.0
    assert time_argument("2024-05-01T10:00:30") == 1714557630.0  # naive = UTC
    assert time_argument("1714557630.5") == 1714557630.5


def _long_track_crop(db: Path, vtest: Path):
    """A box of the longest sampled track, at a frame that is not one of its samples, cut from the clip."""
    with StoreReader(db) as store:
        track = max((t for t in store.tracks() if t.n_samples >= 2), key=lambda t: t.n_boxes)
        boxes = store.boxes([track.id])
        sampled = set(store.samples_of([track.id]).frame.tolist())
    candidates = [i for i, f in enumerate(boxes.frame) if f not in sampled and f - 1 not in sampled]
    k = candidates[len(candidates) // 2]
    cap = cv2.VideoCapture(str(vtest))
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(boxes.frame[k]))
    ok, frame = cap.read()
    cap.release()
    assert ok
    x1, y1, x2, y2 = boxes.xyxy[k].astype(int)
    return track, frame[max(y1, 0):y2, max(x1, 0):x2]


@pytest.mark.slow
def test_query_finds_the_person_of_a_crop_first(demo_run, vtest_path, tmp_path, capsys):
    track, crop = _long_track_crop(demo_run.db, vtest_path)
    image = tmp_path / "suspect.png"
    cv2.imwrite(str(image), crop)
    out = tmp_path / "results"
    assert main(["query", "--db", str(demo_run.db), "--image", str(image), "--top", "3", "--out", str(out),
                 "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "rank" in table and "results.json" in table
    result = json.loads((out / "results.json").read_text())["sightings"]
    assert result[0]["rank"] == 1 and result[0]["track_id"] == track.id
    assert {s["rank"] for s in result} == {1, 2, 3}
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 100
    # camera and time filters
    other = "south" if track.camera_id == "north" else "north"
    assert main(["query", "--db", str(demo_run.db), "--image", str(image), "--camera", other, "--out",
                 str(tmp_path / "r2"), "--device", "cpu"]) == 0
    cams = {s["camera_id"] for s in json.loads((tmp_path / "r2" / "results.json").read_text())["sightings"]}
    assert cams == {other}
    assert main(["query", "--db", str(demo_run.db), "--image", str(image), "--until", "2000-01-01T00:00:00Z",
                 "--out", str(tmp_path / "r3"), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "r3" / "results.json").read_text())["sightings"] == []


@pytest.mark.slow
def test_query_box_option_cuts_the_crop_from_a_frame(demo_run, vtest_path, tmp_path):
    track, _ = _long_track_crop(demo_run.db, vtest_path)
    with StoreReader(demo_run.db) as store:
        boxes = store.boxes([track.id])
    k = len(boxes) // 3
    cap = cv2.VideoCapture(str(vtest_path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(boxes.frame[k]))
    frame = cap.read()[1]
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    out = tmp_path / "r"
    box = [str(float(v)) for v in boxes.xyxy[k]]
    assert main(["query", "--db", str(demo_run.db), "--image", str(tmp_path / "frame.png"), "--box", *box,
                 "--top", "1", "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "results.json").read_text())["sightings"][0]["track_id"] == track.id


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mot", "mtmc", "reid"])
def test_export_writes_files(demo_run, tmp_path, fmt, capsys):
    out = tmp_path / fmt
    assert main(["export", "--db", str(demo_run.db), "--format", fmt, "--out", str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    files = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 0]
    if fmt == "mot":
        assert {p.name for p in files} >= {"north.txt", "south.txt"}
        first = (out / "north.txt").read_text().splitlines()[0].split(",")
        assert len(first) == 10 and int(first[0]) >= 1
    elif fmt == "mtmc":
        rows = [line.split() for line in (out / "mtmc.txt").read_text().splitlines()]
        assert rows and all(len(r) == 9 for r in rows)
        assert len({r[0] for r in rows}) == 2  # both cameras
    else:
        jpgs = [p for p in files if p.suffix == ".jpg"]
        assert len(jpgs) >= 10 and cv2.imread(str(jpgs[0])) is not None


@pytest.mark.slow
def test_bench_prints_a_table_per_camera_count(capsys, tmp_path):
    """1 and 2 cameras with --workers 2 (one group for one camera, two for two); speed.json has the same rows."""
    assert main(["bench", "--frames", "3", "--cameras", "1", "2", "--workers", "2", "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("pipeline bench: vtest.avi, 3 frames per camera")
    assert lines[1].split()[:8] == ["cameras", "workers", "frames", "seconds", "frames/s", "per-cam", "CPU%", "GPU%"]
    assert "detect" in lines[1]
    rows = [line.split() for line in lines[3:-1]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "1", "3"), ("2", "2", "6")]
    assert all(float(r[4]) > 0 and float(r[6]) > 0 and r[7] == "n/a" and float(r[9]) > 0 for r in rows)
    assert lines[-1] == f"wrote {tmp_path / 'speed.json'}"
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert [(r["cameras"], r["workers"], r["frames"]) for r in saved["rows"]] == [(1, 1, 3), (2, 2, 6)]
    assert saved["device"] == "cpu" and all(r["gpu_percent"] is None and r["cpu_percent"] > 0 for r in saved["rows"])


@pytest.mark.slow
def test_query_refuses_a_store_of_another_embedder(tmp_path, vtest_path, capsys):
    """A store whose spec does not name its embedder (here 1280-d like the default MobileNetV2) must
    not be searched with the default embedder: the ids differ, so the query is refused."""
    db = tmp_path / "other.db"
    TrackStore(StoreConfig(path=str(db)), "some-other-net-0123456789ab", 1280, None).close()
    cap = cv2.VideoCapture(str(vtest_path))
    frame = cap.read()[1]
    cap.release()
    cv2.imwrite(str(tmp_path / "q.png"), frame[155:233, 498:532])
    assert main(["query", "--db", str(db), "--image", str(tmp_path / "q.png"), "--device", "cpu",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "some-other-net-0123456789ab" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- bad input on a small store
@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Tracks of real crops on cameras north and south (run 1), generated embeddings: enough for the
    checks that come before the embedder is loaded."""
    from tests.pipeline.store.test_store import add_track, make_store, unit

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("small") / "s.db"
    store = make_store(path)
    store.start_run({})
    store.add_camera("north", "vtest.avi", {})
    store.add_camera("south", "vtest.avi", {})
    add_track(store, "north", 1, 0, 10, np.stack([unit(rng) for _ in range(3)]))
    add_track(store, "south", 1, 20, 30, np.stack([unit(rng) for _ in range(3)]), person=1)
    store.close()
    return path


def _person_png(path: Path, size: tuple[int, int] | None = None) -> Path:
    """A real person crop of the clip's first frame, optionally resized to (w, h)."""
    from tests.pipeline.store.test_store import PERSON_BOXES, clip_frames, crop

    image = crop(clip_frames()[0], PERSON_BOXES[0])
    cv2.imwrite(str(path), image if size is None else cv2.resize(image, size))
    return path


def test_query_refuses_empty_broken_and_tiny_images(small_store, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    proc = _cli("query", "--db", str(small_store), "--image", str(empty))
    assert proc.returncode == 2
    _assert_one_line_error(proc, f"cannot read query image {empty}: file is empty")
    png = _person_png(tmp_path / "whole.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(png[:len(png) // 2])  # libpng prints "libpng error: ..." itself
    (tmp_path / "bad.png").write_bytes(png[:8] + b"x" * 64)  # OpenCV logs "[ERROR:...] ... IHDR ..."
    for name in ("trunc.png", "bad.png"):
        proc = _cli("query", "--db", str(small_store), "--image", str(tmp_path / name))
        assert proc.returncode == 2
        _assert_one_line_error(proc, name, "not a decodable image")  # the decoders' own lines held back
    tiny = _person_png(tmp_path / "tiny.png", (1, 1))
    proc = _cli("query", "--db", str(small_store), "--image", str(tiny))
    assert proc.returncode == 2
    _assert_one_line_error(proc, "tiny.png is 1x1 pixels", "12x48 (WxH) minimum")
    frame = tmp_path / "frame.png"
    from tests.pipeline.store.test_store import clip_frames

    cv2.imwrite(str(frame), clip_frames()[0])
    proc = _cli("query", "--db", str(small_store), "--image", str(frame), "--box", "100", "100", "130", "130")
    assert proc.returncode == 2
    _assert_one_line_error(proc, "--box 100 100 130 130 of the 768x576 image is 30x30 pixels", "minimum")


def test_query_minimum_is_the_sampling_minimum():
    from pipeline.config import EmbedderConfig
    from pipeline.search import MIN_QUERY_HEIGHT, check_query_crop

    assert MIN_QUERY_HEIGHT == EmbedderConfig().min_height
    check_query_crop(np.zeros((MIN_QUERY_HEIGHT, MIN_QUERY_HEIGHT // 4, 3), np.uint8), "crop")
    for h, w in ((MIN_QUERY_HEIGHT - 1, 40), (200, MIN_QUERY_HEIGHT // 4 - 1)):
        with pytest.raises(ValueError, match=f"crop is {w}x{h} pixels"):
            check_query_crop(np.zeros((h, w, 3), np.uint8), "crop")


def test_query_names_an_unknown_camera(small_store, tmp_path):
    image = _person_png(tmp_path / "q.png")
    proc = _cli("query", "--db", str(small_store), "--image", str(image), "--camera", "nosuchcam")
    assert proc.returncode == 2
    _assert_one_line_error(proc, "unknown camera nosuchcam; the store has north, south")
    (tmp_path / "out.txt").write_text("")
    proc = _cli("query", "--db", str(small_store), "--image", str(image), "--out", str(tmp_path / "out.txt"))
    assert proc.returncode == 2
    _assert_one_line_error(proc, "out.txt is a file; pass a folder")


@pytest.mark.parametrize("fmt", ["mot", "mtmc", "reid"])
def test_export_names_bad_out_run_and_camera(small_store, tmp_path, fmt, capsys):
    existing = tmp_path / "existing_file.txt"
    existing.write_text("")
    cases = [(["--out", str(existing)], "existing_file.txt is a file; pass a folder"),
             (["--out", str(tmp_path / "o"), "--run", "99"], "no run 99 (runs: 1)"),
             (["--out", str(tmp_path / "o"), "--camera", "nosuchcam"],
              "unknown camera nosuchcam; the store has north, south")]
    for extra, words in cases:
        assert main(["export", "--db", str(small_store), "--format", fmt, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing_file.txt"]


def test_export_camera_option(small_store, tmp_path, capsys):
    assert main(["export", "--db", str(small_store), "--format", "mot", "--out", str(tmp_path / "o"),
                 "--camera", "south", "--run", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["mot_ids.csv", "south.txt"]
    assert "cameras 1, tracks 1" in capsys.readouterr().out


def test_query_and_export_a_store_on_a_read_only_filesystem(tmp_path, read_only_view, capsys):
    """A store on a read-only mount (root: chmod is not enough): query (real embedder on real crops)
    and export work, since neither writes to the store."""
    from pipeline.stages.embed import Embedder
    from tests.pipeline.store.test_store import PERSON_BOXES, add_track, clip_frames, crop

    embedder = Embedder(device="cpu")
    folder = tmp_path / "share"
    folder.mkdir()
    store = TrackStore(StoreConfig(path=str(folder / "s.db")), embedder.embedder_id, embedder.dim, embedder.spec)
    store.start_run({})
    for person, cam in ((0, "north"), (1, "south"), (2, "south")):
        crops = [crop(clip_frames()[k], PERSON_BOXES[person]) for k in range(3)]
        add_track(store, cam, person + 1, 10 * person, 10 * person + 5, embedder(crops), person=person)
    store.close()
    ro, how = read_only_view(folder)
    query = tmp_path / "q.png"
    cv2.imwrite(str(query), crop(clip_frames()[5], PERSON_BOXES[1]))  # person 1 in a frame not stored
    assert main(["query", "--db", str(ro / "s.db"), "--image", str(query), "--top", "2", "--device", "cpu",
                 "--out", str(tmp_path / "res")]) == 0, (how, capsys.readouterr().err)
    best = json.loads((tmp_path / "res" / "results.json").read_text())["sightings"][0]
    assert (best["camera_id"], best["local_id"]) == ("south", 2)
    assert main(["export", "--db", str(ro / "s.db"), "--format", "mot", "--out", str(tmp_path / "mot")]) == 0
    assert (tmp_path / "mot" / "north.txt").read_text().count("\n") == 3
    assert sorted(p.name for p in ro.iterdir()) == ["s.db"]
