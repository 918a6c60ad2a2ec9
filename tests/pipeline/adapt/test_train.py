"""``pipeline adapt`` on a real store (the demo_run fixture: 60 frames per camera of the clip)."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.adapt import AdaptConfig, adapt_store
from pipeline.config import EmbedderConfig
from pipeline.stages.embed import Embedder
from pipeline.store import StoreReader
from reid_models.checkpoint import load_model

REPO = Path(__file__).resolve().parents[3]
SMALL = AdaptConfig(epochs=1, batch_tracks=4, crops_per_track=4, box_stride=2)


def _crops(db: Path, vtest: Path, n: int = 6) -> list[np.ndarray]:
    """n stored sample crops cut again from the clip."""
    import cv2

    with StoreReader(db) as store:
        s = store.samples_of([t.id for t in store.tracks()])
    cap = cv2.VideoCapture(str(vtest))
    out = []
    for k in np.linspace(0, len(s) - 1, n).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(s.frame[k]))
        ok, frame = cap.read()
        x1, y1, x2, y2 = s.xyxy[k].astype(int)
        out.append(frame[y1:y2, x1:x2])
    cap.release()
    return out


@pytest.fixture(scope="module")
def adapted(demo_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    db = root / "store.db"
    shutil.copy(demo_run.db, db)
    out = root / "site.pt"
    result = adapt_store(db, out, cfg=SMALL, device="cpu", progress=False)
    return db, out, result


@pytest.mark.slow
def test_adapt_writes_a_checkpoint_the_pipeline_embeds_with(adapted, vtest_path):
    db, out, result = adapted
    model, info = load_model(out)
    assert info["model"] == "generic_mnv2_hsv" and info["adapt"]["result"]["tracks"] == result.tracks
    base = Embedder(EmbedderConfig(), device="cpu")
    site = Embedder(EmbedderConfig(checkpoint=str(out)), device="cpu")
    assert site.dim == base.dim and site.embedder_id != base.embedder_id
    crops = _crops(db, vtest_path)
    a, b = base(crops), site(crops)
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-4)
    assert np.abs(a - b).max() > 1e-3                            # the network changed
    assert result.tracks >= 4 and result.crops > 4 * result.tracks
    assert result.cooccurring_pairs > 0
    steps = np.array(result.step_losses)
    assert len(steps) >= 8 and steps[-4:].mean() < steps[:4].mean()   # it learned on the site's tracks


@pytest.mark.slow
def test_adapt_colour_part_is_untouched_and_trunk_frozen(adapted):
    _, out, _ = adapted
    model, _ = load_model(out)
    base, _ = load_model("default")
    trained = dict(model.named_parameters())
    for name, p in base.named_parameters():
        same = torch.equal(p, trained[name])
        block = int(name.split(".")[1]) if name.startswith("features.") else -1
        assert same == (0 <= block < SMALL.train_from), name


@pytest.mark.slow
def test_adapt_falls_back_to_thumbnails_when_the_video_is_gone(demo_run, tmp_path):
    db = tmp_path / "store.db"
    shutil.copy(demo_run.db, db)
    con = sqlite3.connect(db)
    con.execute("UPDATE cameras SET source=?", (str(tmp_path / "gone.avi"),))
    con.commit()
    con.close()
    lines = []
    cfg = dataclasses.replace(SMALL, min_crops_per_track=2, batch_tracks=2, crops_per_track=2)
    result = adapt_store(db, tmp_path / "t.pt", cfg=cfg, device="cpu", progress=False, log=lines.append)
    assert any("thumbnails" in line and "gone.avi" in line for line in lines), lines
    assert result.crops > 0 and (tmp_path / "t.pt").is_file()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, err


def test_adapt_cli_bad_base_and_missing_store(tmp_path):
    db = tmp_path / "none.db"
    _one_line(_cli("adapt", "--db", str(db), "--out", str(tmp_path / "x.pt")), "no store at")
    db.write_bytes(b"")
    _one_line(_cli("adapt", "--db", str(db), "--out", str(tmp_path / "x.pt"), "--base", str(tmp_path / "b.pt")),
              "--base", "b.pt")


@pytest.mark.slow
def test_adapt_cli_writes_the_checkpoint_and_is_audited(demo_run, tmp_path, capsys):
    from pipeline.access import audit
    from pipeline.cli import main

    db = tmp_path / "store.db"
    shutil.copy(demo_run.db, db)
    assert main(["adapt", "--db", str(db), "--out", str(tmp_path / "site.pt"), "--epochs", "1", "--quiet",
                 "--device", "cpu"]) == 0
    assert "adapted generic_mnv2_hsv" in capsys.readouterr().out and (tmp_path / "site.pt").is_file()
    row = audit.read(db, action="adapt")[-1]  # who trained on the people's crops, into which file
    assert row.actor.startswith("os:") and row.details["out"] == str((tmp_path / "site.pt").resolve())
    assert row.details["tracks"] >= 2 and row.details["crops"] > row.details["tracks"]
    assert row.details["settings"]["epochs"] == 1


@pytest.mark.slow
def test_adapt_cli_base_that_is_not_a_checkpoint(demo_run, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not torch")
    _one_line(_cli("adapt", "--db", str(demo_run.db), "--out", str(tmp_path / "x.pt"), "--base", str(bad)),
              "bad.pt", "not a reid_models checkpoint")
