"""``pipeline associate [--follow]`` (:func:`pipeline.associate.associate_store`) on both backends: two
workers' runs of other cameras linked by one associator with the full transit rules; on SQLite a
follower waits while a run holds the file; and the CLI on a PostgreSQL URL (associate, export).

Embeddings are generated unit vectors with exact cosines; crops are real (see test_store.py).
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import yaml

from pipeline.associate import associate_store, stored_association
from pipeline.cli import main
from pipeline.store import StoreReader, is_url
from tests.pipeline.store.test_store import add_track, make_store, near, unit

ASSOCIATION = {"threshold": 0.8, "min_track_samples": 1,
               "transit": [{"cameras": ["north", "south"], "min_seconds": 0, "max_seconds": 10}]}


def _two_workers(db, rng) -> dict[str, int]:
    """Worker north and worker south, each its own run (open at once on PostgreSQL): persons p and q
    walk north -> south, p arriving 5 s after leaving north (within the 10 s rule), q 30 s after (not)."""
    p, q = unit(rng), unit(rng)
    north = make_store(db)
    north.start_run({"association": {"threshold": 0.8, "transit": []}})
    north.add_camera("north", "a.avi")
    pn = add_track(north, "north", 1, 0, 10, np.stack([near(p, 0.95, rng) for _ in range(3)]))
    qn = add_track(north, "north", 2, 0, 10, np.stack([near(q, 0.95, rng) for _ in range(3)]), person=1)
    north.commit()
    if is_url(db):  # PostgreSQL: south writes while north is still open
        south = make_store(db)
    else:
        north.close()
        south = make_store(db)
    south.start_run({"association": {"threshold": 0.8, "transit": []}})
    south.add_camera("south", "b.avi")
    ps = add_track(south, "south", 1, 15, 25, np.stack([near(p, 0.95, rng) for _ in range(3)]))
    qs = add_track(south, "south", 2, 40, 50, np.stack([near(q, 0.95, rng) for _ in range(3)]), person=1)
    south.close()
    north.close()
    return {"pn": pn, "qn": qn, "ps": ps, "qs": qs}


def _gids(db) -> dict[int, int | None]:
    with StoreReader(db) as reader:
        return {t.id: t.global_id for t in reader.tracks()}


def test_one_associator_links_the_workers_tracks_with_the_full_rules(store_db, tmp_path):
    _, db = store_db
    t = _two_workers(db, np.random.default_rng(0))
    assert set(_gids(db).values()) == {None}  # nothing linked yet
    rules = tmp_path / "association.yaml"
    rules.write_text(yaml.safe_dump({"association": ASSOCIATION}))
    assert main(["associate", "--db", str(db), "--config", str(rules)]) == 0
    g = _gids(db)
    assert g[t["pn"]] == g[t["ps"]] != g[t["qn"]]  # p within 10 s: one identity
    assert g[t["qs"]] not in (g[t["qn"]], g[t["pn"]]) and None not in g.values()  # q 30 s later: not linked
    result = associate_store(db, None)  # a second pass: nothing left
    assert (result.matched, result.clustered, result.new, result.identities, result.cross_camera) == (0, 0, 0, 3, 1)


def test_without_a_config_the_runs_settings_are_used(store_db):
    _, db = store_db
    _two_workers(db, np.random.default_rng(1))
    with StoreReader(db) as reader:
        cfg = stored_association(reader)
    assert cfg.threshold == 0.8 and cfg.transit == ()
    result = associate_store(db)  # no transit rule: q's 30 s gap is allowed too
    assert result.identities == 2 and result.cross_camera == 2


def test_a_sqlite_follower_waits_while_a_run_writes_the_file(tmp_path):
    db = tmp_path / "s.db"
    rng = np.random.default_rng(2)
    run = make_store(db)
    run.start_run({})
    add_track(run, "north", 1, 0, 10, unit(rng))
    run.commit()
    notes: list[str] = []
    done = {}

    def follow():
        done["result"] = associate_store(db, follow=True, interval=0.2, note=notes.append, passes=15)

    t = threading.Thread(target=follow)
    t.start()
    threading.Event().wait(1.0)
    assert len(notes) == 1 and notes[0].startswith(f"waiting: store {db} is being written by run 1")
    assert set(_gids(db).values()) == {None}  # the follower wrote nothing while the run held the file
    run.close()
    t.join(30)
    assert done["result"].new == 1 and None not in _gids(db).values()


def test_cli_on_a_postgresql_url_associates_exports_and_queries(pg_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAMREID_INDEX_DIR", str(tmp_path / "indexes"))  # --index-dir sets it: restored after
    _two_workers(pg_url, np.random.default_rng(3))
    rules = tmp_path / "association.yaml"
    rules.write_text(yaml.safe_dump({"association": ASSOCIATION}))
    assert main(["associate", "--db", pg_url, "--config", str(rules)]) == 0
    assert "3 global identities, 1 seen on more than one camera" in capsys.readouterr().out
    out = tmp_path / "mtmc"
    assert main(["export", "--db", pg_url, "--format", "mtmc", "--out", str(out)]) == 0
    rows = [line.split() for line in (out / "mtmc.txt").read_text().splitlines()]
    assert len(rows) == 12 and len({r[1] for r in rows}) == 3  # 4 tracks x 3 boxes, 3 identities
    from pipeline.access import audit

    with StoreReader(pg_url) as reader:  # person p's north track: its mean vector as the query
        north_p = reader.tracks(camera="north")[0]
        np.save(tmp_path / "q.npy", reader.track_embeddings([north_p.id])[0])
    index_home = str(tmp_path / "indexes")  # this machine's local copy of the server's index
    assert main(["query", "--db", pg_url, "--vector", str(tmp_path / "q.npy"), "--top", "2",
                 "--out", str(tmp_path / "query"), "--index-dir", index_home]) == 0
    hits = json.loads((tmp_path / "query" / "results.json").read_text())["sightings"]
    err = capsys.readouterr().err  # none built yet: searched exactly, and told how to build one
    assert f"no search index at {index_home}" in err and f"pipeline index --db {pg_url}" in err
    assert main(["index", "--db", pg_url, "--quiet", "--index-dir", index_home]) == 0
    assert main(["query", "--db", pg_url, "--vector", str(tmp_path / "q.npy"), "--top", "2",
                 "--out", str(tmp_path / "query"), "--index-dir", index_home]) == 0
    assert "no search index" not in capsys.readouterr().err
    assert json.loads((tmp_path / "query" / "results.json").read_text())["sightings"] == hits
    assert hits[0]["track_id"] == north_p.id and {h["camera_id"] for h in hits if h["rank"] == 1} == {"north", "south"}
    # audited on the server, as on a file store
    assert [e.action for e in audit.read(pg_url)] == ["export", "search", "search"]


def test_bad_associate_arguments_are_one_line(tmp_path, capsys):
    assert main(["associate", "--db", str(tmp_path / "none.db")]) == 2
    assert capsys.readouterr().err.startswith("error: no store at")
    with pytest.raises(SystemExit) as e:
        main(["associate", "--db", str(tmp_path / "none.db"), "--interval", "0"])
    assert e.value.code == 2 and "expected a positive number of seconds" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"association": {"treshold": 0.5}}))
    assert main(["associate", "--db", str(tmp_path / "none.db"), "--config", str(bad)]) == 2
    assert "did you mean 'threshold'" in capsys.readouterr().err
    assert main(["reembed", "--db", "postgresql://localhost/cams", "--checkpoint", "default"]) == 2
    assert "SQLite store file only" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["query", "--image", "x.jpg"], ["eval", "--gt", "north=gt.txt"]])
def test_readers_give_a_clear_error_for_an_unreachable_url(argv, tmp_path, capsys):
    url = f"postgresql://cam@/cams?host={tmp_path}&connect_timeout=2"
    assert main([argv[0], "--db", url, *argv[1:]]) == 2
    assert capsys.readouterr().err.startswith("error: cannot connect to PostgreSQL store")
