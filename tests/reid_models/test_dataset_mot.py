"""The MOT re-ID protocol on the real demo clip and its PETS09-S2L1 ground truth (read from ../shared)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reid_models.datasets import DatasetLayoutError, build_dataset
from reid_models.datasets.mot import parse_same_person, read_mot_gt

REPO = Path(__file__).resolve().parents[2]
GT = REPO.parent / "shared" / "data" / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt"
needs_gt = pytest.mark.skipif(not GT.is_file(), reason=f"MOTChallenge ground truth not found at {GT} "
                                                       "(../shared/data/mot15; never copied into the repo)")


@pytest.fixture
def mot_root(tmp_path, vtest_path):
    root = tmp_path / "PETS09-S2L1"
    (root / "gt").mkdir(parents=True)
    (root / "gt" / "gt.txt").symlink_to(GT)
    (root / "vtest.avi").symlink_to(vtest_path)
    return root


@needs_gt
def test_protocol_on_the_real_clip(mot_root, tmp_path):
    data = build_dataset("mot", mot_root, cache=tmp_path / "crops")
    gt = read_mot_gt(GT)
    assert data.train == [] and len(gt) == 4476  # 4650 rows, 174 flagged 0 (ignored, as the benchmark does)
    # one query per (person, 50-frame window), and it is one of that pair's gallery crops
    keys = [(pid, cam) for _, pid, cam in data.query]
    assert len(keys) == len(set(keys)) == len({(pid, cam) for _, pid, cam in data.gallery})
    assert set(data.query) <= set(data.gallery)
    names = [Path(p).stem.split("_") for p, _, _ in data.gallery]
    frames = [int(f[2][1:]) for f in names]
    assert all(f % 5 == 0 for f in frames) and {int(c[1:]) for _, c, _ in names} == {f // 50 for f in frames}
    # every crop is at least 40 px tall and the query is the middle crop of its (person, window)
    import cv2

    assert min(cv2.imread(p).shape[0] for p, _, _ in data.gallery[::25]) >= 39
    path, pid, cam = data.query[0]
    same = sorted(p for p, q, c in data.gallery if (q, c) == (pid, cam))
    assert path == same[len(same) // 2]
    # the cache is reused: the second read finds the same items without decoding the video
    again = build_dataset("mot", mot_root, cache=tmp_path / "crops")
    assert again.gallery == data.gallery and again.query == data.query


@needs_gt
def test_same_person_groups_give_one_label_before_queries_are_chosen(mot_root, tmp_path):
    plain = build_dataset("mot", mot_root, cache=tmp_path / "crops")
    data = build_dataset("mot", mot_root, cache=tmp_path / "crops", same_person="2=13, 8=14=15=18")
    assert [p for p, _, _ in data.gallery] == [p for p, _, _ in plain.gallery]
    gt_id = {p: int(Path(p).stem.split("_")[0]) for p, _, _ in data.gallery}
    group = {13: 2, 14: 8, 15: 8, 18: 8}
    assert all(label == group.get(gt_id[p], gt_id[p]) for p, label, _ in data.gallery)
    assert {label for _, label, _ in data.gallery} == {gt_id[p] for p in gt_id} - set(group)
    keys = {(label, cam) for _, label, cam in data.gallery}
    assert len(data.query) == len(keys) < len(plain.query)  # 15 and 14 share window 4 (frames 200-249)
    # the query of a shared window is still its middle crop in time, whichever id it came from
    path = next(p for p, label, cam in data.query if (label, cam) == (8, 4))
    frames = sorted(Path(p).stem.split("_f")[1] for p, label, cam in data.gallery if (label, cam) == (8, 4))
    assert {gt_id[p] for p, label, cam in data.gallery if (label, cam) == (8, 4)} == {14, 15}
    assert Path(path).stem.split("_f")[1] == frames[len(frames) // 2]
    with pytest.raises(ValueError, match=r"same person id 99 is not an id of .*gt.txt \(ids 1\.\.19\)"):
        build_dataset("mot", mot_root, cache=tmp_path / "crops", same_person="2=99")


def test_same_person_groups_are_parsed_and_checked():
    assert parse_same_person("13=2, 8=14=15,") == [(2, 13), (8, 14, 15)]
    assert parse_same_person([[3, 11]]) == [(3, 11)] and parse_same_person("") == []
    with pytest.raises(ValueError, match="'2=x' is not ids joined by '='"):
        parse_same_person("2=x")
    with pytest.raises(ValueError, match="group 2=2 needs two or more different ids"):
        parse_same_person("2=2")
    with pytest.raises(ValueError, match=r"id 8 is in two same person groups; join them into one"):
        parse_same_person("8=14,15=8")


def test_layout_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        build_dataset("mot", tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match="gt.txt"):
        build_dataset("mot", tmp_path)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "gt.txt").write_text("1,2,3\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1 is not 'frame,id,x,y,w,h"):
        read_mot_gt(tmp_path / "gt" / "gt.txt")
    (tmp_path / "gt" / "gt.txt").write_text("1,2,3,4,50,60,1,-1,-1,-1\n")
    with pytest.raises(DatasetLayoutError, match="no video"):
        build_dataset("mot", tmp_path)
