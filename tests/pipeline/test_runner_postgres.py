"""Runs on a PostgreSQL store (slow: real runs of the embedder): two workers at once, one per camera, plus
one associator store what one SQLite run of both cameras stores; a second worker given a camera that a
live run writes is refused in one line.

The equality test runs twice: with the public detections (../shared/data/mot15/PETS09-S2L1/det/det.txt,
the demo clip's MOTChallenge detections) standing in for the detector, and with the bundled YOLO detector
itself (each worker then runs its own detector on one camera, where the SQLite run batches both).
"""
from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.store import StoreReader

ROOT = Path(__file__).resolve().parents[2]
DET = ROOT.parent / "shared" / "data" / "mot15" / "PETS09-S2L1" / "det" / "det.txt"
WINDOW = {"north": (330, 400), "south": (400, 470)}  # people cross from north to south at frame 400


def _configs(tmp: Path, detector: bool = False) -> dict[str, Path]:
    """all.yaml (both cameras, SQLite), north.yaml and south.yaml (one camera and its own rules each);
    the cameras read det.txt, or (``detector``) run the detector of streams/demo.yaml."""
    base = yaml.safe_load((ROOT / "streams" / "demo.yaml").read_text())
    for cam in base["cameras"]:
        cam.update(source=str(ROOT / "streams" / "vtest.avi"), start_frame=WINDOW[cam["id"]][0],
                   end_frame=WINDOW[cam["id"]][1])
        if not detector:
            cam["detections"] = str(DET)
    paths = {}
    whole = copy.deepcopy(base)
    whole["store"]["path"] = str(tmp / "one.db")
    paths["all"] = tmp / "all.yaml"
    paths["all"].write_text(yaml.safe_dump(whole))
    for i, name in enumerate(("north", "south")):
        part = copy.deepcopy(base)
        part["cameras"] = [part["cameras"][i]]
        part["association"]["transit"] = [r for r in part["association"]["transit"] if set(r["cameras"]) == {name}]
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(part))
    return paths


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _identities(db) -> set[frozenset]:
    """Identities as sets of (camera, local id, start frame): comparable across stores, ids aside."""
    groups = defaultdict(set)
    with StoreReader(db) as reader:
        for t in reader.tracks():
            if t.global_id is not None:
                groups[t.global_id].add((t.camera_id, t.local_id, t.start_frame))
    return {frozenset(g) for g in groups.values()}


@pytest.mark.slow
@pytest.mark.skipif(not DET.is_file(), reason=f"public detections {DET} not found (../shared)")
@pytest.mark.parametrize("boxes", ["det.txt", "detector"])
def test_two_workers_and_an_associator_store_what_one_sqlite_run_stores(pg_url, tmp_path, boxes):
    """The workers' tracks, boxes and vectors equal one SQLite run's, and one `associate` pass gives the
    same identities on both stores. (The SQLite run's own in-run linking, every 5 s of stream time,
    can differ from one pass at the end: association is greedy in time. README has the full clip
    with `associate --follow`.)"""
    cams = _configs(tmp_path, detector=boxes == "detector")
    one = _cli("run", "--cameras", str(cams["all"]), "--device", "cpu", "--quiet")
    assert one.wait(600) == 0, one.stderr.read()
    workers = [_cli("run", "--cameras", str(cams[n]), "--db", pg_url, "--device", "cpu", "--quiet")
               for n in ("north", "south")]
    outs = [(w.wait(600), *w.communicate()) for w in workers]
    assert [rc for rc, _, _ in outs] == [0, 0], outs
    assert all("identities: linked by `python -m pipeline associate" in out for _, out, _ in outs)
    linker = _cli("associate", "--db", pg_url, "--config", str(cams["all"]))
    assert linker.wait(300) == 0, linker.stderr.read()

    with StoreReader(tmp_path / "one.db") as a, StoreReader(pg_url) as b:
        assert len(b.runs()) == 2 and all(finished is not None for _, _, finished, _ in b.runs())
        key = lambda t: (t.camera_id, t.local_id, t.start_frame, t.end_frame, t.n_boxes, t.n_samples)  # noqa: E731
        ta, tb = sorted(a.tracks(), key=key), sorted(b.tracks(), key=key)
        assert [key(t) for t in ta] == [key(t) for t in tb] and len(ta) >= 8
        ea, eb = a.track_embeddings([t.id for t in ta]), b.track_embeddings([t.id for t in tb])
        assert np.abs(ea - eb).max() < 1e-5
        for x, y in zip(ta, tb):
            bx, by = a.boxes([x.id]), b.boxes([y.id])
            assert np.array_equal(bx.frame, by.frame) and np.allclose(bx.xyxy, by.xyxy)

    once = tmp_path / "once.db"  # the SQLite run's store, its identities made again in one pass
    with sqlite3.connect(tmp_path / "one.db") as src, sqlite3.connect(once) as dst:
        src.backup(dst)
    with sqlite3.connect(once) as con:
        con.executescript("UPDATE tracks SET global_id=NULL; DELETE FROM links; DELETE FROM identities;")
    con.close()
    linker = _cli("associate", "--db", str(once), "--config", str(cams["all"]))
    assert linker.wait(300) == 0, linker.stderr.read()
    expected = _identities(once)
    assert len(expected) >= 5 and any(len({cam for cam, _, _ in g}) == 2 for g in expected)
    assert _identities(pg_url) == expected
    # eval picks each camera's last run: north's and south's workers' runs, scored as the one SQLite run
    from pipeline.score_store import evaluate_store

    gt = {"north": DET.parent.parent / "gt" / "gt.txt", "south": DET.parent.parent / "gt" / "gt.txt"}
    got, want = evaluate_store(pg_url, gt), evaluate_store(once, gt)
    assert got["runs"] == {"north": 1, "south": 2} or got["runs"] == {"north": 2, "south": 1}
    for part in ("cameras", "global"):  # the same boxes and identities (summed in another order: 1e-16 apart)
        assert json.loads(json.dumps(got[part]), parse_float=lambda v: round(float(v), 9)) == \
            json.loads(json.dumps(want[part]), parse_float=lambda v: round(float(v), 9))
    assert got["global"]["IDF1"] > 0.3


@pytest.mark.slow
@pytest.mark.skipif(not DET.is_file(), reason=f"public detections {DET} not found (../shared)")
def test_a_second_worker_of_a_live_camera_is_refused(pg_url, tmp_path):
    cams = _configs(tmp_path)
    long = yaml.safe_load(cams["north"].read_text())
    long["cameras"][0].update(start_frame=0, end_frame=795)  # the whole clip: still running when refused
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(long))
    first = _cli("run", "--cameras", str(tmp_path / "long.yaml"), "--db", pg_url, "--device", "cpu")
    try:
        for line in first.stderr:  # the progress bar starts once the run holds its cameras
            if "run:" in line or "frame" in line:
                break
        second = _cli("run", "--cameras", str(cams["north"]), "--db", pg_url, "--device", "cpu", "--quiet")
        rc, out, err = second.wait(300), *second.communicate()
        assert rc == 2, (out, err)
        assert err.startswith("error: camera north of store postgresql://") and "camreid run 1 (pid " in err
        assert err.count("\n") == 1
        assert first.poll() is None  # the first worker was live throughout
    finally:
        first.terminate()
        first.wait(120)
