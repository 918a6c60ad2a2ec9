"""Manual corrections: stored as manual links, audited, refused to viewers, respected by later association."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.access import audit, corrections, users
from pipeline.access.users import AccessDenied
from pipeline.associate import CrossCameraAssociator
from pipeline.config import AssociationConfig
from pipeline.store import StoreReader
from tests.pipeline.store.test_store import add_track, make_store, near, sql


def identities(path):
    with StoreReader(path) as r:
        return {t.id: t.global_id for t in r.tracks()}


def test_association_made_two_cross_camera_identities(store_path):
    gids = identities(store_path)
    assert gids[1] == gids[3] and gids[2] == gids[4] and len(set(gids.values())) == 3


def test_viewer_cannot_correct(store_path):
    users.add_user(store_path, "vic", "viewer", "long enough")
    users.add_user(store_path, "nora", "operator", "long enough", cameras=["north"])
    before = identities(store_path)
    for call in (lambda a: corrections.merge_identities(store_path, before[1], before[2], a),
                 lambda a: corrections.split_track(store_path, 1, a),
                 lambda a: corrections.confirm_link(store_path, 1, a),
                 lambda a: corrections.reject_link(store_path, 1, a)):
        with pytest.raises(AccessDenied, match="viewer"):
            call("vic")
    with pytest.raises(AccessDenied, match="camera south"):  # track 3 is on south
        corrections.split_track(store_path, 3, "nora")
    assert identities(store_path) == before
    assert audit.read(store_path, action="correct") == []


def test_merge_split_confirm_reject_are_manual_links(store_path):
    users.add_user(store_path, "olga", "operator", "long enough")
    g = identities(store_path)
    moved = corrections.merge_identities(store_path, g[1], g[2], "olga")
    assert moved == [2, 4]
    assert set(identities(store_path)[t] for t in (1, 2, 3, 4)) == {g[1]}
    new = corrections.split_track(store_path, 4, "olga")
    assert identities(store_path)[4] == new not in g.values()
    assert corrections.confirm_link(store_path, 1, "olga") == g[1]
    assert corrections.reject_link(store_path, 2, "olga") == g[1]
    assert identities(store_path)[2] is None
    rows = sql(store_path, "SELECT track_id, global_id, method, actor FROM links WHERE method='manual' ORDER BY id")
    assert rows == [(2, g[1], "manual", "olga"), (4, g[1], "manual", "olga"), (4, new, "manual", "olga"),
                    (1, g[1], "manual", "olga")]
    assert sorted(sql(store_path, "SELECT track_id, global_id FROM link_rejections")) == [(2, g[1]), (4, g[1])]
    kinds = [e.details["kind"] for e in audit.read(store_path, action="correct")]
    assert kinds == ["merge", "split", "confirm", "reject"]
    assert audit.verify(store_path).ok
    n = dict(sql(store_path, "SELECT id, n_tracks FROM identities"))
    assert n[g[1]] == 2 and n[g[2]] == 0 and n[new] == 1


def test_later_association_respects_corrections(store_path):
    g = identities(store_path)
    corrections.reject_link(store_path, 3, "os:tester")  # south track 3 is P, but rejected from P's identity
    corrections.split_track(store_path, 4, "os:tester")   # Q's south track on its own
    split = identities(store_path)
    st = make_store(store_path)
    st.start_run({})
    rng = np.random.default_rng(3)
    with StoreReader(store_path) as r:
        p_vec = r.track_embeddings([1])[0]
    again = add_track(st, "north", 5, 200, 210, np.stack([near(p_vec, 0.97, rng) for _ in range(3)]))  # P again
    CrossCameraAssociator(AssociationConfig(threshold=0.6)).link(st)
    st.close()
    after = identities(store_path)
    assert after[again] == g[1]                      # a new sighting of P still joins P
    assert after[3] is not None and after[3] != g[1]  # the rejected pair is not linked again
    assert after[4] == split[4] != g[2]          # the split persists
    assert after[2] == g[2] and after[1] == g[1] and after[5] == g[5]
