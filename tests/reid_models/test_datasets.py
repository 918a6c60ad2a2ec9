"""Dataset readers on tiny datasets written in the real published layouts and file names.

The real datasets cannot exist on this machine, so each test writes a few small JPEG/PNG files
with the real folder structure, file-name conventions, list files and protocol .mat files.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from reid_models.datasets import DATASETS, DatasetLayoutError, ReIDDataset, build_dataset

RNG = np.random.default_rng(0)


def write_image(path: Path, size: tuple[int, int] = (16, 8)) -> np.ndarray:
    """A small real image file (JPEG or PNG by suffix); returns its RGB pixels (H, W, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def layout_message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, DatasetLayoutError) and isinstance(excinfo.value, ValueError)
    assert "\n" not in message and message.endswith("see README 'Datasets'")
    return message


def as_tuples(items):
    return sorted((Path(p).name, pid, cam) for p, pid, cam in items)


# ---------------------------------------------------------------- Market-1501 / DukeMTMC-reID
MARKET_TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg",
                "0007_c6s4_001902_02.jpg", "0009_c5s1_000401_01.jpg", "0009_c1s1_000626_01.jpg"]
MARKET_QUERY = ["0003_c1s1_000151_00.jpg", "0005_c4s1_008751_00.jpg"]
MARKET_GALLERY = ["0003_c2s1_000376_01.jpg", "0005_c6s1_012451_02.jpg", "0000_c1s1_000151_01.jpg",
                  "-1_c3s1_001701_03.jpg"]


def make_market(base: Path) -> Path:
    for folder, names in (("bounding_box_train", MARKET_TRAIN), ("query", MARKET_QUERY),
                          ("bounding_box_test", MARKET_GALLERY)):
        for name in names:
            write_image(base / folder / name)
    (base / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")  # as in the real zip
    return base


def test_market1501_counts_relabelling_and_cameras(tmp_path):
    make_market(tmp_path / "Market-1501-v15.09.15")
    data = build_dataset("market1501", tmp_path)
    assert isinstance(data, ReIDDataset) and data.name == "market1501"
    assert as_tuples(data.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0), ("0002_c2s1_000301_01.jpg", 0, 1),
        ("0007_c3s3_077419_03.jpg", 1, 2), ("0007_c6s4_001902_02.jpg", 1, 5),
        ("0009_c1s1_000626_01.jpg", 2, 0), ("0009_c5s1_000401_01.jpg", 2, 4),
    ]
    assert data.num_train_pids == 3 and data.num_train_cams == 5
    assert as_tuples(data.query) == [("0003_c1s1_000151_00.jpg", 3, 0), ("0005_c4s1_008751_00.jpg", 5, 3)]
    # junk (-1) dropped, distractors (0000) kept with their original ids
    assert as_tuples(data.gallery) == [("0000_c1s1_000151_01.jpg", 0, 0), ("0003_c2s1_000376_01.jpg", 3, 1),
                                       ("0005_c6s1_012451_02.jpg", 5, 5)]
    assert all(Path(p).is_file() for p, _, _ in data.train + data.query + data.gallery)
    junk = build_dataset("market1501", tmp_path, keep_junk=True)
    assert ("-1_c3s1_001701_03.jpg", -1, 2) in as_tuples(junk.gallery)
    assert "train" in data.summary() and "gallery" in data.summary()


@pytest.mark.parametrize("where", ["Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15"])
def test_market1501_root_may_be_dataset_folder_or_parent(tmp_path, where):
    base = make_market(tmp_path / where)
    assert len(build_dataset("market1501", base).train) == 6
    assert len(build_dataset("market1501", tmp_path).train) == 6


def test_market1501_layout_errors(tmp_path):
    base = make_market(tmp_path / "Market-1501-v15.09.15")
    (base / "query").rename(base / "queries")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("market1501", tmp_path)
    expected = f"Market-1501: expected folder {base / 'query'} with images named 0002_c1s1_000451_03.jpg"
    assert expected in layout_message(excinfo)
    (base / "queries").rename(base / "query")

    write_image(base / "query" / "person1.jpg")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("market1501", base)
    assert f"file {base / 'query' / 'person1.jpg'} is not named like 0002_c1s1_000451_03.jpg" in layout_message(excinfo)
    (base / "query" / "person1.jpg").unlink()

    write_image(base / "bounding_box_test" / "0004_c7s1_000001_01.jpg")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("market1501", base)
    assert "has camera c7, expected c1..c6" in layout_message(excinfo)

    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("market1501", tmp_path / "nowhere")
    assert "does not exist" in layout_message(excinfo)

    empty = tmp_path / "empty"
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (empty / sub).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("market1501", empty)
    assert f"no images in {empty / 'bounding_box_train'}" in layout_message(excinfo)

    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("market1501", tmp_path / "empty" / "query")  # a wrong folder entirely
    assert "Market-1501-v15.09.15/bounding_box_train" in layout_message(excinfo)


def test_dukemtmc_reads_layout_and_rejects_bad_camera(tmp_path):
    base = tmp_path / "DukeMTMC-reID"
    for name in ["0001_c2_f0046182.jpg", "0001_c5_f0051781.jpg", "0003_c8_f0086231.jpg"]:
        write_image(base / "bounding_box_train" / name)
    write_image(base / "query" / "0005_c1_f0043115.jpg")
    for name in ["0005_c2_f0044371.jpg", "7000_c3_f0012345.jpg"]:
        write_image(base / "bounding_box_test" / name)
    data = build_dataset("dukemtmc", tmp_path)
    assert as_tuples(data.train) == [("0001_c2_f0046182.jpg", 0, 1), ("0001_c5_f0051781.jpg", 0, 4),
                                     ("0003_c8_f0086231.jpg", 1, 7)]
    assert (data.num_train_pids, data.num_train_cams) == (2, 3)
    assert as_tuples(data.query) == [("0005_c1_f0043115.jpg", 5, 0)]
    assert [pid for _, pid, _ in data.gallery] == [5, 7000]
    write_image(base / "query" / "0006_c9_f0000001.jpg")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("dukemtmc", base)
    assert "DukeMTMC-reID: file" in layout_message(excinfo) and "expected c1..c8" in str(excinfo.value)
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("dukemtmc", tmp_path / "DukeMTMC-reID" / "query")
    assert "DukeMTMC-reID/bounding_box_train with images named 0001_c2_f0046182.jpg" in layout_message(excinfo)


# ---------------------------------------------------------------- CUHK03 new protocol
def make_cuhk03_np(root: Path, variants=("labeled", "detected")) -> None:
    for variant in variants:
        base = root / "cuhk03-np" / variant
        for name in ["0001_c1_1.png", "0001_c2_6.png", "0004_c1_2.png", "0004_c2_7.png"]:
            write_image(base / "bounding_box_train" / name)
        write_image(base / "query" / "0010_c1_1.png")
        for name in ["0010_c2_6.png", "0011_c1_1.png"]:
            write_image(base / "bounding_box_test" / name)


def test_cuhk03_np_labeled_and_detected(tmp_path):
    make_cuhk03_np(tmp_path)
    labeled = build_dataset("cuhk03", tmp_path, variant="labeled")
    detected = build_dataset("cuhk03_detected", tmp_path / "cuhk03-np")
    assert labeled.name == "cuhk03_labeled" and detected.name == "cuhk03_detected"
    assert "/labeled/" in labeled.train[0][0] and "/detected/" in detected.train[0][0]
    assert as_tuples(labeled.train) == [("0001_c1_1.png", 0, 0), ("0001_c2_6.png", 0, 1),
                                        ("0004_c1_2.png", 1, 0), ("0004_c2_7.png", 1, 1)]
    assert (labeled.num_train_pids, labeled.num_train_cams) == (2, 2)
    assert as_tuples(labeled.query) == [("0010_c1_1.png", 10, 0)]
    assert as_tuples(labeled.gallery) == [("0010_c2_6.png", 10, 1), ("0011_c1_1.png", 11, 0)]
    assert len(build_dataset("cuhk03", tmp_path / "cuhk03-np" / "labeled").train) == 4


def test_cuhk03_layout_errors(tmp_path):
    make_cuhk03_np(tmp_path, variants=("labeled",))
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("cuhk03", tmp_path, variant="detected")
    message = layout_message(excinfo)
    np_dir = tmp_path / "cuhk03-np" / "detected"
    assert f"expected {np_dir}/bounding_box_train with images named 0001_c1_1.png" in message
    assert "cuhk03_new_protocol_config_detected.mat" in message and "cuhk-03.mat" in message
    with pytest.raises(ValueError, match="variant must be one of"):
        build_dataset("cuhk03", tmp_path, variant="both")


def make_cuhk03_raw(folder: Path, variant: str, extract: bool = True) -> dict[str, np.ndarray]:
    """Raw release: protocol .mat in its real format; returns the pixels written per file name.

    Persons: pair 1 pid 1 (images 1, 2 view 1; 6 view 2), pair 1 pid 2 (1; 6), pair 2 pid 1 (1; 7),
    labels 1, 2, 844 (the protocol's global ids). Train = pair-1 persons, test = pair-2 person.
    """
    names = ["1_001_1_01.png", "1_001_1_02.png", "1_001_2_06.png", "1_002_1_01.png", "1_002_2_06.png",
             "2_001_1_01.png", "2_001_2_07.png"]
    labels = [1, 1, 1, 2, 2, 844, 844]
    pixels = {}
    for name in names:
        path = folder / f"images_{variant}" / name
        pixels[name] = write_image(path) if extract else RNG.integers(0, 256, (12, 6, 3), dtype=np.uint8)
    filelist = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        filelist[i, 0] = name
    folder.mkdir(parents=True, exist_ok=True)
    column = lambda values: np.asarray(values, dtype=np.float64).reshape(-1, 1)  # noqa: E731
    scipy.io.savemat(str(folder / f"cuhk03_new_protocol_config_{variant}.mat"), {
        "filelist": filelist, "labels": column(labels), "camId": column([1, 1, 2, 1, 2, 1, 2]),
        "train_idx": column([1, 2, 3, 4, 5]), "query_idx": column([6]), "gallery_idx": column([7]),
    })
    return pixels


def test_cuhk03_raw_release_with_protocol_mat(tmp_path):
    folder = tmp_path / "cuhk03"
    make_cuhk03_raw(folder, "labeled")
    data = build_dataset("cuhk03", tmp_path, variant="labeled")
    assert as_tuples(data.train) == [("1_001_1_01.png", 0, 0), ("1_001_1_02.png", 0, 0), ("1_001_2_06.png", 0, 1),
                                     ("1_002_1_01.png", 1, 0), ("1_002_2_06.png", 1, 1)]
    assert as_tuples(data.query) == [("2_001_1_01.png", 844, 0)]
    assert as_tuples(data.gallery) == [("2_001_2_07.png", 844, 1)]
    assert (data.num_train_pids, data.num_train_cams) == (2, 2)

    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("cuhk03", folder, variant="detected")
    assert f"expected {folder / 'cuhk03_new_protocol_config_detected.mat'}" in layout_message(excinfo)

    (folder / "images_labeled" / "1_002_2_06.png").unlink()
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("cuhk03", folder)
    assert f"{folder / 'images_labeled' / '1_002_2_06.png'} listed in" in layout_message(excinfo)

    (folder / "cuhk03_new_protocol_config_labeled.mat").write_bytes(b"garbage, not MATLAB")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("cuhk03", folder)
    assert "cannot read" in layout_message(excinfo)


def test_cuhk03_raw_without_images_needs_mat_or_h5py(tmp_path, monkeypatch):
    folder = tmp_path / "cuhk03"
    make_cuhk03_raw(folder, "detected", extract=False)
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("cuhk03", folder, variant="detected")
    assert f"expected {folder / 'images_detected'} with images named 1_001_1_01.png, or " \
           f"{folder / 'cuhk03_release' / 'cuhk-03.mat'}" in layout_message(excinfo)
    (folder / "cuhk03_release").mkdir()
    (folder / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"\x89HDF placeholder")
    monkeypatch.setitem(sys.modules, "h5py", None)  # as on an install without the optional h5py
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("cuhk03", folder, variant="detected")
    assert "needs h5py: pip install h5py" in layout_message(excinfo)


def write_cuhk03_mat(path: Path, images: dict[str, np.ndarray], num_pairs: int = 2, num_pids: int = 2) -> None:
    """cuhk-03.mat as MATLAB v7.3 writes it: HDF5, cells as object references, arrays transposed."""
    h5py = pytest.importorskip("h5py")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as mat:
        refs = mat.create_group("#refs#")
        counter = iter(range(10**6))

        def store(array, dtype=None):
            return refs.create_dataset(f"r{next(counter)}", data=array, dtype=dtype).ref

        for variant in ("detected", "labeled"):
            pair_refs = []
            for pair in range(num_pairs):
                cell = np.empty((num_pids, 10), dtype=object)
                for pid in range(num_pids):
                    for image in range(10):
                        view = 1 if image < 5 else 2
                        name = f"{pair + 1}_{pid + 1:03d}_{view}_{image + 1:02d}.png"
                        pixels = images.get(name) if variant == "labeled" else None
                        cell[pid, image] = store(pixels.T) if pixels is not None else store(np.zeros(2, np.uint64))
                pair_refs.append(store(cell.T, dtype=h5py.ref_dtype))
            mat.create_dataset(variant, data=np.array([pair_refs], dtype=object), dtype=h5py.ref_dtype)


def test_cuhk03_raw_extracts_images_from_hdf5_mat(tmp_path):
    folder = tmp_path / "cuhk03"
    pixels = make_cuhk03_raw(folder, "labeled", extract=False)
    write_cuhk03_mat(folder / "cuhk03_release" / "cuhk-03.mat", pixels)
    data = build_dataset("cuhk03", tmp_path)
    assert not (folder / "images_labeled.partial").exists()
    assert len(data.train) == 5 and data.query[0][1] == 844
    for path, _, _ in data.train + data.query + data.gallery:
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), pixels[Path(path).name])


# ---------------------------------------------------------------- MSMT17
def make_msmt17(root: Path, folder: str, train_dir: str, test_dir: str) -> Path:
    base = root / folder
    lists = {
        "list_train.txt": [(train_dir, "0000/0000_000_01_0303morning_0015_0.jpg", 0),
                           (train_dir, "0000/0000_001_05_0303morning_0036_1.jpg", 0),
                           (train_dir, "0001/0001_000_12_0303noon_0401_0.jpg", 1)],
        "list_val.txt": [(train_dir, "0001/0001_003_15_0303afternoon_1220_2.jpg", 1)],
        "list_query.txt": [(test_dir, "0000/0000_000_03_0303morning_0024_0.jpg", 0)],
        "list_gallery.txt": [(test_dir, "0000/0000_001_07_0303morning_0101_1.jpg", 0),
                             (test_dir, "0002/0002_000_10_0304noon_0051_0.jpg", 2)],
    }
    for list_name, rows in lists.items():
        for sub, rel, _ in rows:
            write_image(base / sub / rel)
        (base / list_name).write_text("".join(f"{rel} {pid}\n" for _, rel, pid in rows))
    return base


@pytest.mark.parametrize("folder,train_dir,test_dir", [("MSMT17_V1", "train", "test"),
                                                       ("MSMT17_V2", "mask_train_v2", "mask_test_v2")])
def test_msmt17_versions_read_list_files(tmp_path, folder, train_dir, test_dir):
    base = make_msmt17(tmp_path, folder, train_dir, test_dir)
    data = build_dataset("msmt17", tmp_path)
    assert as_tuples(data.train) == [("0000_000_01_0303morning_0015_0.jpg", 0, 0),
                                     ("0000_001_05_0303morning_0036_1.jpg", 0, 4),
                                     ("0001_000_12_0303noon_0401_0.jpg", 1, 11)]
    assert f"/{train_dir}/0000/" in data.train[0][0]
    assert as_tuples(data.query) == [("0000_000_03_0303morning_0024_0.jpg", 0, 2)]
    assert [pid for _, pid, _ in data.gallery] == [0, 2] and data.num_train_cams == 3
    with_val = build_dataset("msmt17", base, include_val=True)
    assert len(with_val.train) == 4 and with_val.train[-1][2] == 14 and with_val.num_train_pids == 2


def test_msmt17_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("msmt17", tmp_path)
    assert f"expected {tmp_path / 'MSMT17_V1'} (with train/, test/, list_train.txt" in layout_message(excinfo)
    base = make_msmt17(tmp_path, "MSMT17_V1", "train", "test")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("msmt17", tmp_path, version="v2")
    assert "MSMT17_V2 (with mask_train_v2/, mask_test_v2/" in layout_message(excinfo)

    (base / "list_val.txt").unlink()
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("msmt17", tmp_path)
    assert f"expected list file {base / 'list_val.txt'} with lines like" in layout_message(excinfo)
    (base / "list_val.txt").write_text("0001/0001_003_15_0303afternoon_1220_2.jpg\n")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("msmt17", tmp_path, include_val=True)
    assert f"{base / 'list_val.txt'}:1:" in layout_message(excinfo) and "is not '<path> <pid>'" in str(excinfo.value)
    (base / "list_val.txt").write_text("0001/0001_003_15_0303afternoon_1220_2.jpg 1\n")
    (base / "list_query.txt").write_text("0000/0000_000_03_0303morning_0024_0.jpg 0\n0000/0000_9_99.jpg 0\n")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("msmt17", tmp_path)
    assert f"{base / 'list_query.txt'}:2: file name 0000_9_99.jpg has no camera 01..15" in layout_message(excinfo)
    (base / "list_query.txt").write_text("0000/0000_000_03_0303morning_0099_0.jpg 0\n")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("msmt17", tmp_path)
    assert "0000_000_03_0303morning_0099_0.jpg is missing" in layout_message(excinfo)


# ---------------------------------------------------------------- Partial-REID / Partial-iLIDS
def test_partial_reid_and_ilids_are_test_only(tmp_path):
    for pid in (1, 2):
        for index in (1, 2):
            write_image(tmp_path / "Partial_REID" / "partial_body_images" / f"{pid:03d}_{index:02d}.jpg")
            write_image(tmp_path / "Partial_REID" / "whole_body_images" / f"{pid:03d}_{index:02d}.jpg")
        write_image(tmp_path / "PartialiLIDS" / "Probe" / f"{pid:03d}.jpg")
        write_image(tmp_path / "PartialiLIDS" / "Gallery" / f"{pid:03d}.jpg")
    reid = build_dataset("partial_reid", tmp_path)
    assert reid.train == [] and (reid.num_train_pids, reid.num_train_cams) == (0, 0)
    assert as_tuples(reid.query) == [("001_01.jpg", 1, 0), ("001_02.jpg", 1, 0), ("002_01.jpg", 2, 0),
                                     ("002_02.jpg", 2, 0)]
    assert {cam for _, _, cam in reid.gallery} == {1} and len(reid.gallery) == 4
    ilids = build_dataset("partial_ilids", tmp_path / "PartialiLIDS")
    assert as_tuples(ilids.query) == [("001.jpg", 1, 0), ("002.jpg", 2, 0)]
    assert as_tuples(ilids.gallery) == [("001.jpg", 1, 1), ("002.jpg", 2, 1)]

    write_image(tmp_path / "PartialiLIDS" / "Gallery" / "extra_a.jpg")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("partial_ilids", tmp_path)
    assert "Partial-iLIDS: file" in layout_message(excinfo) and "is not named like 001.jpg" in str(excinfo.value)
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("partial_reid", tmp_path / "PartialiLIDS")
    assert "Partial_REID/partial_body_images with images named 001_01.jpg" in layout_message(excinfo)


# ---------------------------------------------------------------- custom
def test_custom_market_style_folder(tmp_path):
    for name in ["12_c1_a.jpg", "12_c2_b.png", "40_c3s1_000451_03.jpg"]:
        write_image(tmp_path / "mine" / "bounding_box_train" / name)
    data = build_dataset("custom", tmp_path / "mine")
    assert as_tuples(data.train) == [("12_c1_a.jpg", 0, 0), ("12_c2_b.png", 0, 1), ("40_c3s1_000451_03.jpg", 1, 2)]
    assert data.query == [] and data.gallery == []
    write_image(tmp_path / "mine" / "query" / "12_c1_q.jpg")
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("custom", tmp_path / "mine")
    assert f"expected folder {tmp_path / 'mine' / 'bounding_box_test'}" in layout_message(excinfo)
    with pytest.raises(DatasetLayoutError) as excinfo:
        build_dataset("custom", tmp_path / "mine" / "query")
    assert "or a CSV file with header path,pid,camid,split" in layout_message(excinfo)


def test_custom_csv(tmp_path):
    for name in ["a.jpg", "b.jpg", "c.jpg", "q.jpg", "g.jpg", "junk.jpg"]:
        write_image(tmp_path / "crops" / name)
    rows = ["path,pid,camid,split", "crops/a.jpg,17,0,train", "crops/b.jpg,17,3,train", "crops/c.jpg,5,3,train",
            "crops/q.jpg,99,0,query", f"{tmp_path / 'crops' / 'g.jpg'},99,1,gallery", "crops/junk.jpg,-1,1,gallery"]
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    for root in (csv_path, tmp_path):
        data = build_dataset("custom", root)
        assert as_tuples(data.train) == [("a.jpg", 1, 0), ("b.jpg", 1, 3), ("c.jpg", 0, 3)]
        assert (data.num_train_pids, data.num_train_cams) == (2, 2)
        assert as_tuples(data.query) == [("q.jpg", 99, 0)] and as_tuples(data.gallery) == [("g.jpg", 99, 1)]

    def error_for(lines: list[str]) -> str:
        csv_path.write_text("\n".join(lines) + "\n")
        with pytest.raises(DatasetLayoutError) as excinfo:
            build_dataset("custom", csv_path)
        return layout_message(excinfo)

    assert "has header path,person,camid,split; expected path,pid,camid,split" in error_for(
        ["path,person,camid,split", "crops/a.jpg,1,0,train"])
    assert f"{csv_path}:2: split 'test' is not one of train, query, gallery" in error_for(
        [rows[0], "crops/a.jpg,1,0,test"])
    assert f"{csv_path}:3: pid 'x' and camid '0' must be integers" in error_for(
        [rows[0], "crops/a.jpg,1,0,train", "crops/b.jpg,x,0,train"])
    assert f"image {tmp_path / 'crops' / 'nope.jpg'} is missing" in error_for([rows[0], "crops/nope.jpg,1,0,train"])
    assert "has no gallery rows" in error_for([rows[0], "crops/q.jpg,1,0,query"])


# ---------------------------------------------------------------- build_dataset
def test_build_dataset_names_and_options(tmp_path):
    assert set(DATASETS) == {"market1501", "dukemtmc", "cuhk03", "cuhk03_labeled", "cuhk03_detected", "msmt17",
                             "partial_reid", "partial_ilids", "custom", "mot"}
    with pytest.raises(ValueError, match="unknown dataset 'market'; choose one of: market1501"):
        build_dataset("market", tmp_path)
    with pytest.raises(ValueError, match="dataset 'dukemtmc' has no option 'variant'; options: "):
        build_dataset("dukemtmc", tmp_path, variant="labeled")
