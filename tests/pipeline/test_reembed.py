"""``pipeline reembed``: a store gets a new embedder (another dimension here), resumably, and is re-associated."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import EmbedderConfig
from pipeline.reembed import reembed_store
from pipeline.stages.embed import Embedder
from pipeline.stages.sampling import crop_boxes
from pipeline.store import StoreReader
from reid_models.checkpoint import save_checkpoint
from reid_models.registry import create_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def striped_checkpoint(tmp_path_factory) -> Path:
    """The generic embedder with one stripe vector more: a real, different embedder (2816-d, not 1536-d)."""
    path = tmp_path_factory.mktemp("ckpt") / "striped.pt"
    model = create_model("generic_mnv2_hsv", num_classes=0, stripes=1)
    save_checkpoint(path, model, model_name="generic_mnv2_hsv", model_kwargs={"stripes": 1}, num_classes=0,
                    input_size=(256, 128))
    return path


def _copy(demo_run, tmp_path) -> Path:
    db = tmp_path / "store.db"
    shutil.copy(demo_run.db, db)
    return db


def _meta(db: Path) -> tuple[str, int]:
    with StoreReader(db) as s:
        return s.embedder_id, s.embedding_dim


@pytest.mark.slow
def test_reembed_swaps_embedder_vectors_and_identities(demo_run, tmp_path, striped_checkpoint, vtest_path):
    db = _copy(demo_run, tmp_path)
    old_id, old_dim = _meta(db)
    result = reembed_store(db, str(striped_checkpoint), device="cpu", threshold=0.8, progress=False)
    new = Embedder(EmbedderConfig(checkpoint=str(striped_checkpoint)), device="cpu")
    assert _meta(db) == (new.embedder_id, 2816) and old_dim == 1536 and old_id != new.embedder_id
    with StoreReader(db) as store:
        tracks = store.tracks()
        s = store.samples_of([t.id for t in tracks])
        assert s.embedding.shape == (len(s), 2816) and result.from_video == len(s) and result.from_thumbnail == 0
        # the stored vectors are what the new embedder gives for the crops cut from the source video
        cap = cv2.VideoCapture(str(vtest_path))
        picks = np.linspace(0, len(s) - 1, 5).astype(int)
        crops = []
        for k in picks:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(s.frame[k]))
            crops += crop_boxes(cap.read()[1], s.xyxy[k:k + 1])
        cap.release()
        assert np.allclose(s.embedding[picks], new(crops), atol=1e-5)
        # each track's mean is the renormalised mean of its new samples
        t = next(t for t in tracks if t.n_samples >= 2)
        mean = s.embedding[s.track_id == t.id].mean(0)
        assert np.allclose(store.track_embeddings([t.id])[0], mean / np.linalg.norm(mean), atol=1e-5)
        # association ran again with the new vectors: every ended track with samples has an identity
        assert all(t.global_id is not None for t in tracks if t.n_samples >= 1 and t.ended)
        assert {m for *_, m in store.links()} <= {"match", "cluster", "new"}
    con = sqlite3.connect(db)
    froms = dict(con.execute("SELECT embedded_from, COUNT(*) FROM samples GROUP BY embedded_from").fetchall())
    names = con.execute("SELECT e.name FROM samples s JOIN embedders e ON e.id=s.embedder_id").fetchall()
    assert froms == {"video": len(s)} and {n for (n,) in names} == {new.embedder_id}
    assert con.execute("SELECT COUNT(*) FROM pending_embeddings").fetchone()[0] == 0
    con.close()
    # query now embeds the photo with the new embedder (it refused any other before)
    out = tmp_path / "q"
    assert main(["query", "--db", str(db), "--image", str(vtest_path.parent / "suspect.jpg"), "--out", str(out),
                 "--device", "cpu"]) == 0


@pytest.mark.slow
def test_reembed_resumes_after_an_interruption(demo_run, tmp_path, striped_checkpoint):
    db = _copy(demo_run, tmp_path)
    old = _meta(db)

    def stop(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reembed_store(db, str(striped_checkpoint), device="cpu", batch=8, progress=False, on_batch=stop)
    assert _meta(db) == old                                # still the old embedder, readable as before
    with StoreReader(db) as store:
        n = len(store.sample_matrix()[0])
    result = reembed_store(db, str(striped_checkpoint), device="cpu", batch=8, progress=False)
    assert result.resumed >= 8 and result.resumed + result.from_video == n
    assert _meta(db)[1] == 2816


@pytest.mark.slow
def test_reembed_survives_kill_9(demo_run, tmp_path, striped_checkpoint):
    db = _copy(demo_run, tmp_path)
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "reembed", "--db", str(db), "--checkpoint",
                             str(striped_checkpoint), "--batch", "4", "--quiet", "--device", "cpu"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            con = sqlite3.connect(db, timeout=1)
            staged = con.execute("SELECT COUNT(*) FROM pending_embeddings").fetchone()[0]
            con.close()
        except sqlite3.OperationalError:
            continue
        if staged >= 4:
            break
    assert proc.poll() is None and staged >= 4, "reembed finished or stalled before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _meta(db)[1] == 1536
    result = reembed_store(db, str(striped_checkpoint), device="cpu", batch=64, progress=False)
    assert result.resumed >= 4 and _meta(db)[1] == 2816


@pytest.mark.slow
def test_reembed_falls_back_to_thumbnails_and_says_so(demo_run, tmp_path, striped_checkpoint, capsys):
    db = _copy(demo_run, tmp_path)
    con = sqlite3.connect(db)
    con.execute("UPDATE cameras SET source=?", (str(tmp_path / "moved.avi"),))
    con.commit()
    con.close()
    assert main(["reembed", "--db", str(db), "--checkpoint", str(striped_checkpoint), "--quiet",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "moved.avi" in out and "thumbnails" in out
    with StoreReader(db) as store:
        assert store.embedding_dim == 2816
    from pipeline.access import audit

    row = audit.read(db, action="reembed")[-1]  # who re-read the people's crops, with what
    assert row.actor.startswith("os:") and row.details["checkpoint"] == str(striped_checkpoint)
    assert row.details["from_thumbnail"] > 0 and row.details["from_video"] == 0


def test_reembed_cli_one_line_errors(tmp_path, capsys):
    assert main(["reembed", "--db", str(tmp_path / "no.db"), "--checkpoint", "default"]) == 2
    assert "no store at" in capsys.readouterr().err
    (tmp_path / "x.db").write_bytes(b"")
    assert main(["reembed", "--db", str(tmp_path / "x.db"), "--checkpoint", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoint not found" in err
