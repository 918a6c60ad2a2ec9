"""search_tracks / format_table / write_results on a store of real crops from the demo clip.

Embeddings are generated unit vectors with chosen cosines (no embedder is available to these tests).
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.associate import CrossCameraAssociator
from pipeline.config import AssociationConfig
from pipeline.search import format_table, search_tracks, write_results
from pipeline.search.report import TILE_W
from reid_models.common import iso_time as iso
from reid_models.common import parse_time
from tests.pipeline.store.test_store import (
    PERSON_BOXES,
    T0,
    add_track,
    clip_frames,
    make_store,
    near,
    thumbnail_shape,
    unit,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scene(request, tmp_path_factory):
    """P on cam1 (0-10 s) and cam2 (30-40 s), linked; Q on cam1 (0-10 s) and cam2 (50-60 s), linked;
    R on cam2 (20-25 s), still open so unlinked. Once per store backend."""
    if request.param == "sqlite":
        yield from _scene(tmp_path_factory.mktemp("q") / "s.db")
    else:
        from tests.conftest import pg_schema

        with pg_schema(request.getfixturevalue("pg_server"), "search_scene") as url:
            yield from _scene(url)


def _scene(db):
    rng = np.random.default_rng(0)
    p, q, r = unit(rng), unit(rng), unit(rng)
    store = make_store(db)
    store.start_run({})
    pk = {
        "p1": add_track(store, "cam1", 1, 0, 10, np.stack([near(p, c, rng) for c in (0.8, 0.95, 0.85)]), person=0),
        "q1": add_track(store, "cam1", 2, 0, 10, np.stack([near(q, 0.9, rng) for _ in range(3)]), person=1),
        "p2": add_track(store, "cam2", 1, 30, 40, np.stack([near(p, 0.85, rng) for _ in range(3)]), person=0),
        "q2": add_track(store, "cam2", 2, 50, 60, np.stack([near(q, 0.9, rng) for _ in range(3)]), person=1),
    }
    CrossCameraAssociator(AssociationConfig(threshold=0.5)).link(store)
    add_track(store, "cam2", 3, 20, 25, np.stack([r, r]), person=2, end=False)
    pk["r"] = store.reader.tracks(camera="cam2", ended=False)[0].id
    store.commit()
    yield store.reader, pk, (p, q, r)
    store.close()


def test_ranks_right_person_first_and_lists_every_camera(scene):
    store, pk, (p, q, r) = scene
    hits = search_tracks(store, p, top=10)
    assert hits[0].track_id == pk["p1"] and hits[0].rank == 1  # its sample at cosine .95 is the best
    assert hits[0].score == pytest.approx(0.95, abs=1e-5)
    rank1 = [h for h in hits if h.rank == 1]
    assert [h.track_id for h in rank1] == [pk["p1"], pk["p2"]]
    assert {h.camera_id for h in rank1} == {"cam1", "cam2"} and len({h.global_id for h in rank1}) == 1
    assert all(h.identity_score == rank1[0].score for h in rank1)
    assert sorted({h.rank for h in hits}) == [1, 2, 3]  # P, Q, and R counted as its own identity
    unlinked = [h for h in hits if h.global_id is None]
    assert [h.track_id for h in unlinked] == [pk["r"]]
    # the sighting carries its best sample: real crop thumbnail, box and time
    thumb = cv2.imdecode(np.frombuffer(hits[0].thumbnail, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == thumbnail_shape(PERSON_BOXES[0]) and hits[0].box == PERSON_BOXES[0]
    assert hits[0].sample_time == T0 + 5.0


def test_query_for_unlinked_track_and_top(scene):
    store, pk, (p, q, r) = scene
    hits = search_tracks(store, near(r, 0.99, np.random.default_rng(1)), top=1)
    assert [h.track_id for h in hits] == [pk["r"]] and hits[0].global_id is None


def test_camera_and_time_filters(scene):
    store, pk, (p, q, r) = scene
    cam2 = search_tracks(store, p, cameras=["cam2"])
    assert {h.camera_id for h in cam2} == {"cam2"} and cam2[0].track_id == pk["p2"]
    early = search_tracks(store, p, since=T0, until=T0 + 15)  # only the cam1 tracks overlap 0-15 s
    assert {h.track_id for h in early} == {pk["p1"], pk["q1"]}
    iso_window = search_tracks(store, q, since=iso(T0 + 45), until=iso(T0 + 100))
    assert [h.track_id for h in iso_window] == [pk["q2"]]
    with pytest.raises(ValueError, match="^unknown camera cam3; the store has cam1, cam2$"):
        search_tracks(store, p, cameras="cam3")  # a typo is not "no sightings"


def test_max_versus_mean_scoring(tmp_path):
    rng = np.random.default_rng(2)
    v = unit(rng)
    store = make_store(tmp_path / "s.db")
    store.start_run({})
    one_good_view = add_track(store, "cam1", 1, 0, 5, np.stack([near(v, c, rng) for c in (0.97, 0.1, 0.1)]))
    steady = add_track(store, "cam1", 2, 0, 5, np.stack([near(v, 0.8, rng) for _ in range(3)]), person=1)
    assert search_tracks(store.reader, v, by="max")[0].track_id == one_good_view
    assert search_tracks(store.reader, v, by="mean")[0].track_id == steady
    with pytest.raises(ValueError, match="dims"):
        search_tracks(store.reader, np.ones(5))
    store.close()


def test_format_table_and_write_results(scene, tmp_path):
    store, pk, (p, q, r) = scene
    hits = search_tracks(store, p)
    table = format_table(hits)
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["rank", "score", "global", "camera", "track"]
    assert len(lines) == 2 + len(hits)
    assert lines[2].split()[:4] == ["1", f"{hits[0].score:.3f}", str(hits[0].global_id), "cam1"]
    assert iso(T0) in lines[2] and iso(T0 + 10) in lines[2]
    assert "(no tracks" in format_table([])

    query = clip_frames()[0][218:308, 250:285]
    paths = write_results(hits, tmp_path / "out", query_image=query)
    data = json.loads(paths["json"].read_text())["sightings"]
    assert [d["track_id"] for d in data] == [h.track_id for h in hits]
    assert data[0]["start_iso"] == iso(T0) and (tmp_path / "out" / data[0]["thumbnail"]).is_file()
    sheet = cv2.imread(str(paths["contact_sheet"]))
    n_tiles = 1 + len(hits)
    assert sheet.shape[1] == min(n_tiles, 8) * TILE_W
    # the first tile shows the query crop: its centre column is the query's colours, not the grey fill
    first = sheet[40:200, 4:TILE_W - 4]
    assert np.abs(first.astype(int) - 40).sum(axis=2).max() > 60
    with pytest.raises(ValueError, match="cannot read query image"):
        write_results(hits, tmp_path / "out2", query_image=tmp_path / "missing.jpg")


def test_since_until_are_parsed_by_the_shared_time_helper(scene):
    store, pk, (p, q, r) = scene
    assert parse_time("1970-01-01T00:01:00Z") == 60.0
    assert parse_time("1970-01-01T00:01:00") == 60.0  # naive = UTC
    assert parse_time("75") == 75.0
    assert search_tracks(store, p, since=None, until=None) == search_tracks(store, p)  # None = no bound
    assert search_tracks(store, p, since=str(T0 + 45)) == search_tracks(store, p, since=T0 + 45)
    with pytest.raises(ValueError, match="ISO-8601"):
        search_tracks(store, p, since="yesterday")
