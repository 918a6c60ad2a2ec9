"""export_store: MOTChallenge, AI City MTMC and Market-1501-style folders parse back.

The store holds real crops of the demo clip as thumbnails; embeddings are generated unit vectors
(no embedder is available to these tests).
"""
from __future__ import annotations

import re
from collections import defaultdict

import cv2
import numpy as np
import pytest

from pipeline.associate import CrossCameraAssociator
from pipeline.config import AssociationConfig
from pipeline.export import export_store
from tests.pipeline.store.test_store import PERSON_BOXES, add_track, make_store, near, unit

MARKET = re.compile(r"([-\d]+)_c(\d)s(\d)_([-\d]+)_(\d+)\.jpg")


def samples(v, rng, n=3):
    return np.stack([near(v, 0.92, rng) for _ in range(n)])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Run 1: P on cam1 then cam2, Q on cam1 then cam3, S on cam2 only, plus one unlinked track.
    Run 2: P again on cam1 (same local id 1 as in run 1), R on cam2 then cam3."""
    rng = np.random.default_rng(0)
    p, q, r, s = (unit(rng) for _ in range(4))
    path = tmp_path_factory.mktemp("export") / "s.db"
    assoc = CrossCameraAssociator(AssociationConfig(threshold=0.6))
    st = make_store(path)
    st.start_run({})
    add_track(st, "cam1", 1, 0, 10, samples(p, rng), person=0)
    add_track(st, "cam1", 2, 0, 10, samples(q, rng), person=1)
    add_track(st, "cam2", 1, 30, 40, samples(p, rng), person=0)
    add_track(st, "cam3", 1, 50, 60, samples(q, rng), person=1)
    add_track(st, "cam2", 2, 0, 10, samples(s, rng), person=2)
    assoc.link(st)
    add_track(st, "cam3", 2, 70, 80, samples(s, rng, 1), person=2)  # ended after the last link: no identity
    st.close()
    st = make_store(path)
    st.start_run({})
    add_track(st, "cam1", 1, 100, 110, samples(p, rng), person=0)
    add_track(st, "cam2", 3, 100, 110, samples(r, rng), person=1)
    add_track(st, "cam3", 3, 130, 140, samples(r, rng), person=1)
    assoc.link(st)
    add_track(st, "cam3", 9, 200, 210, samples(unit(rng), rng, 1), person=2)
    st.commit()
    yield st.reader
    st.close()


def test_mot(store, tmp_path):
    counts = export_store(store, "mot", tmp_path)
    assert counts == {"cameras": 3, "tracks": 10, "boxes": 30}
    mapping = [line.split(",") for line in (tmp_path / "mot_ids.csv").read_text().splitlines()[1:]]
    for cam in ("cam1", "cam2", "cam3"):
        rows = [line.split(",") for line in (tmp_path / f"{cam}.txt").read_text().splitlines()]
        assert all(len(r) == 10 and r[7:] == ["-1", "-1", "-1"] for r in rows)
        frames = [int(r[0]) for r in rows]
        assert min(frames) >= 1 and frames == sorted(frames)
        tracks = store.tracks(camera=cam)
        assert len({r[1] for r in rows}) == len(tracks)  # ids unique per camera across both runs
        assert sorted({int(r[1]) for r in rows}) == list(range(1, len(tracks) + 1))
        assert len(rows) == sum(t.n_boxes for t in tracks)
        assert {m[0] for m in mapping if m[0] == cam} and len([m for m in mapping if m[0] == cam]) == len(tracks)
    first = (tmp_path / "cam1.txt").read_text().splitlines()[0].split(",")
    x1, y1, x2, y2 = PERSON_BOXES[0]
    assert first[:7] == ["1", "1", f"{x1:.2f}", f"{y1:.2f}", f"{x2 - x1:.2f}", f"{y2 - y1:.2f}", "0.9000"]
    only_run2 = export_store(store, "mot", tmp_path / "run2", run_id=2)
    assert only_run2["tracks"] == 4


def test_mtmc(store, tmp_path):
    counts = export_store(store, "mtmc", tmp_path)
    cams = dict(line.split() for line in (tmp_path / "cameras.txt").read_text().splitlines())
    assert cams == {"1": "cam1", "2": "cam2", "3": "cam3"}
    rows = [list(map(int, line.split())) for line in (tmp_path / "mtmc.txt").read_text().splitlines()]
    assert all(len(r) == 9 and r[7:] == [-1, -1] and r[2] >= 1 for r in rows)
    linked = store.tracks(linked=True)
    assert len(rows) == sum(t.n_boxes for t in linked) == counts["boxes"]  # unlinked tracks skipped
    assert {r[1] for r in rows} == {t.global_id for t in linked}
    seen = defaultdict(set)
    for r in rows:
        seen[r[1]].add(cams[str(r[0])])
    p_gid = store.tracks(camera="cam1", run_id=2)[0].global_id
    assert seen[p_gid] == {"cam1", "cam2"}  # P: cam1 in both runs, cam2 in run 1
    assert counts["identities"] == len(store.identities())


def test_reid_market_folder(store, tmp_path):
    counts = export_store(store, "reid", tmp_path)
    items = {}
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        names = sorted(p.name for p in (tmp_path / split).iterdir())
        parsed = [MARKET.fullmatch(n) for n in names]
        assert all(parsed), names
        items[split] = [(int(m[1]), int(m[2])) for m in parsed]
        assert counts[split] == len(names)
        img = cv2.imread(str(tmp_path / split / names[0]))
        assert img is not None and img.shape[2] == 3
    train_ids = {pid for pid, _ in items["bounding_box_train"]}
    test_ids = {pid for pid, _ in items["bounding_box_test"]}
    assert train_ids and test_ids and not train_ids & test_ids
    assert items["query"] and {pid for pid, _ in items["query"]} <= test_ids
    for pid, cam in items["query"]:  # every query has its identity in the gallery on another camera
        assert any(g == pid and c != cam for g, c in items["bounding_box_test"])
    identities = store.identities()
    multi = {g for g, cams in identities.items() if len(cams) >= 2}
    assert {pid for pid, _ in items["query"]} <= multi
    assert train_ids | test_ids == set(identities)
    assert sum(counts[s] for s in ("bounding_box_train", "query", "bounding_box_test")) == sum(
        t.n_samples for t in store.tracks(linked=True))

    from reid_models.datasets import build_dataset  # the trainer's readers take the folder as is
    custom = build_dataset("custom", tmp_path)
    market = build_dataset("market1501", tmp_path)
    for ds in (custom, market):
        assert (len(ds.train), len(ds.query), len(ds.gallery)) == (
            counts["bounding_box_train"], counts["query"], counts["bounding_box_test"])
        assert ds.num_train_pids == len(train_ids)

    with pytest.raises(ValueError, match="not empty"):
        export_store(store, "reid", tmp_path)


def test_reid_limits_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    p = unit(rng)
    st = make_store(tmp_path / "s.db")
    st.start_run({})
    with pytest.raises(ValueError, match="no tracks with a global identity"):
        export_store(st.reader, "reid", tmp_path / "empty")
    for k in range(10):
        add_track(st, f"cam{k}", 1, 20 * k, 20 * k + 10, samples(p, rng, 2))
    CrossCameraAssociator(AssociationConfig(threshold=0.6)).link(st)
    assert len(st.reader.identities()) == 1
    with pytest.raises(ValueError, match="at most 9 cameras.*has 10"):
        export_store(st.reader, "reid", tmp_path / "ten")
    counts = export_store(st.reader, "reid", tmp_path / "nine", cameras=[f"cam{k}" for k in range(9)])
    assert counts["cameras"] == 9 and counts["query"] == 9  # one query per camera with >= 2 samples
    with pytest.raises(ValueError, match="unknown export format"):
        export_store(st.reader, "coco", tmp_path / "x")
    st.close()


def test_mot_and_mtmc_boxes_are_cut_to_the_frame(tmp_path):
    """Boxes past the frame edge (a person walking out; a Kalman box) are clipped to the camera's
    width x height from the cameras table; a box left with no area is dropped."""
    from pipeline.types import Detections, Frame
    from tests.pipeline.store.test_store import make_store as new_store

    st = new_store(tmp_path / "edge.db")
    st.start_run({})
    st.add_camera("cam1", "vtest.avi", {"width": 768, "height": 576})
    image = np.zeros((576, 768, 3), np.uint8)
    boxes = [[-12.0, 500.0, 30.0, 600.0], [740.0, -5.0, 790.0, 100.0], [800.0, 10.0, 850.0, 90.0]]
    st.record_frame(Frame("cam1", 4, 1.0, image), Detections.from_arrays(boxes, [0.9, 0.8, 0.7], track_id=[1, 2, 3]))
    st.end_tracks("cam1", [1, 2, 3])
    st.commit()
    gid = st.new_identity()
    for t in st.reader.tracks():
        st.assign_identity(t.id, gid if t.local_id == 1 else st.new_identity(), 1.0, "test")
    st.commit()
    export_store(st.reader, "mtmc", tmp_path / "mtmc")
    export_store(st.reader, "mot", tmp_path / "mot")
    st.close()
    lines = (tmp_path / "mtmc" / "mtmc.txt").read_text().splitlines()
    rows = sorted(list(map(int, line.split()))[3:7] for line in lines)
    assert rows == [[0, 500, 30, 76], [740, 0, 28, 100]]
    lines = (tmp_path / "mot" / "cam1.txt").read_text().splitlines()
    mot = sorted([float(v) for v in line.split(",")[2:6]] for line in lines)
    assert mot == [[0.0, 500.0, 30.0, 76.0], [740.0, 0.0, 28.0, 100.0]]


@pytest.mark.parametrize("fmt", ["mot", "mtmc", "reid"])
def test_bad_out_run_and_camera_are_named(store, tmp_path, fmt):
    existing = tmp_path / "existing_file.txt"
    existing.write_text("keep me")
    with pytest.raises(ValueError, match="is a file; pass a folder"):
        export_store(store, fmt, existing)
    assert existing.read_text() == "keep me"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="full is not empty"):
        export_store(store, fmt, tmp_path / "full")
    with pytest.raises(ValueError, match=r"^no run 99 \(runs: 1, 2\)"):
        export_store(store, fmt, tmp_path / "run99", run_id=99)
    with pytest.raises(ValueError, match="^unknown camera nosuchcam; the store has cam1, cam2, cam3$"):
        export_store(store, fmt, tmp_path / "cam", cameras=["cam1", "nosuchcam"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing_file.txt", "full"]  # nothing written
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]


def test_cameras_option_and_empty_out_folder(store, tmp_path):
    (tmp_path / "empty").mkdir()  # an existing empty folder is fine
    counts = export_store(store, "mot", tmp_path / "empty", cameras=["cam2", "cam3"])
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["cam2.txt", "cam3.txt", "mot_ids.csv"]
    assert counts["tracks"] == len(store.tracks(camera=["cam2", "cam3"]))


def test_failed_export_leaves_no_folder(tmp_path, monkeypatch):
    """An export that fails half-way (here: the disk fills after the first thumbnail) leaves neither a
    half-written --out folder nor the folders above it that it created."""
    rng = np.random.default_rng(3)
    p = unit(rng)
    st = make_store(tmp_path / "s.db")
    st.start_run({})
    for k in range(2):
        add_track(st, f"cam{k}", 1, 20 * k, 20 * k + 10, samples(p, rng, 3))
    CrossCameraAssociator(AssociationConfig(threshold=0.6)).link(st)
    real_write = type(tmp_path).write_bytes
    written = []

    def write_bytes(self, data):
        if written:
            raise OSError(28, "No space left on device")
        written.append(self)
        return real_write(self, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", write_bytes)
    with pytest.raises(OSError, match="No space"):
        export_store(st.reader, "reid", tmp_path / "new" / "market")
    assert written and sorted(p.name for p in tmp_path.iterdir()) == ["s.db", "s.db-shm", "s.db-wal",
                                                                       "s.db.lock"]  # the open writer holds its lock
    monkeypatch.undo()
    counts = export_store(st.reader, "reid", tmp_path / "new" / "market")
    assert sum(counts[s] for s in ("bounding_box_train", "query", "bounding_box_test")) == 6
    st.close()
