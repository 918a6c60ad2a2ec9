"""reid_models.plots: CMC figure and ranked-results grid written as real PNGs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_models.plots import BORDER, CORRECT_RGB, QUERY_RGB, WRONG_RGB, plot_cmc, plot_identities, plot_ranked_results

ASSETS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets"


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> list[str]:
    """Eight person-sized crops (2:1) cut from ultralytics' real photos bus.jpg and zidane.jpg."""
    out = tmp_path_factory.mktemp("crops")
    paths = []
    for name in ("bus.jpg", "zidane.jpg"):
        img = cv2.imread(str(ASSETS / name))
        assert img is not None, f"missing real photo {ASSETS / name}"
        h, w = img.shape[:2]
        for i in range(4):
            x = i * w // 4
            path = out / f"{Path(name).stem}_{i}.jpg"
            cv2.imwrite(str(path), img[h // 4: h // 4 + w // 4, x: x + w // 8])
            paths.append(str(path))
    return paths


def test_plot_cmc_writes_a_png(tmp_path):
    cmc = np.linspace(0.6, 1.0, 50)
    path = plot_cmc({"model": cmc, "model + re-ranking": np.minimum(cmc + 0.1, 1.0)}, tmp_path / "sub" / "cmc.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (450, 600, 3)
    assert (img < 250).any(axis=2).mean() > 0.02  # axes, curves and text were drawn
    with pytest.raises(ValueError, match="fractions"):
        plot_cmc({"percent": cmc * 100}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_cmc({}, tmp_path / "none.png")


def _frame_colours(img: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """Per grid row, the frame colours from left to right, read on each row's top border line.

    That line runs above every image of the row, so it holds only frame colour and background.
    """
    rgb = img[..., ::-1]
    is_query = (rgb == QUERY_RGB).all(axis=2)
    query_lines = np.nonzero(is_query.sum(1) > 20)[0]
    starts = [y for i, y in enumerate(query_lines) if i == 0 or y - query_lines[i - 1] > 1]
    tops = starts[::2]  # each query frame gives a top and a bottom band of border lines
    rows = []
    for y in tops:
        line = [tuple(int(c) for c in px) for px in rgb[y]]
        colours = [c for i, c in enumerate(line) if c != (255, 255, 255) and (i == 0 or c != line[i - 1])]
        rows.append(colours)
    return rows


def test_ranked_results_frames_correct_green_and_wrong_red(tmp_path, crops):
    q_paths, g_paths = crops[:2], crops[2:]
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    #                  g0  g1  g2  g3  g4  g5
    g_pids = np.array([1, 1, 3, -1, 2, 1])
    g_cams = np.array([0, 1, 1, 1, 2, 2])
    distmat = np.array([
        # q0 (pid 1, cam 0): g0 same pid+camera and g3 junk are skipped -> g1 C, g2 W, g4 W, g5 C
        [0.1, 0.2, 0.3, 0.05, 0.4, 0.5],
        # q1 (pid 2, cam 0): g3 junk skipped -> g0 W, g4 C, g1 W, g2 W
        [0.1, 0.3, 0.4, 0.0, 0.2, 0.6],
    ])
    path = plot_ranked_results(q_paths, g_paths, distmat, q_pids, g_pids, q_cams, g_cams, tmp_path / "ranks.png",
                               top=4, n_queries=5, cell_size=(64, 32))
    img = cv2.imread(str(path))
    frame_h, frame_w = 64 + 2 * BORDER, 32 + 2 * BORDER
    assert img.shape[0] > 2 * frame_h and img.shape[1] > 5 * frame_w  # 2 rows of query + 4 results
    assert img.shape[0] < 3 * frame_h and img.shape[1] < 7 * frame_w
    green, red, blue = CORRECT_RGB, WRONG_RGB, QUERY_RGB
    assert _frame_colours(img) == [[blue, green, red, red, green], [blue, red, green, red, red]]
    # explicit query choice, fewer results than asked for: only what the gallery holds
    path = plot_ranked_results(q_paths, g_paths, distmat, q_pids, g_pids, q_cams, g_cams, tmp_path / "q1.png",
                               top=10, query_indices=[1], cell_size=(64, 32))
    assert _frame_colours(cv2.imread(str(path))) == [[blue, red, green, red, red, red]]


def test_ranked_results_bad_images_are_clear_errors(tmp_path, crops):
    args = (np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    with pytest.raises(FileNotFoundError, match="gallery image not found: .*nowhere.jpg"):
        plot_ranked_results([crops[0]], [crops[1], str(tmp_path / "nowhere.jpg")], *args, tmp_path / "x.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode query image .*broken.jpg"):
        plot_ranked_results([str(broken)], crops[1:3], *args, tmp_path / "x.png")
    with pytest.raises(ValueError, match="distmat"):
        plot_ranked_results([crops[0]], crops[1:4], *args, tmp_path / "x.png")


def test_identities_sheet_has_a_row_per_identity_in_camera_order(tmp_path, crops):
    pids = [3, 3, 3, 7, 7, -1, 9, 9]
    cams = [2, 0, 1, 5, 4, 0, 1, 1]
    path = plot_identities(crops, pids, cams, tmp_path / "ids.png", per_identity=2, cell_size=(40, 20))
    img = cv2.imread(str(path))
    frame_h, frame_w = 40 + 2 * BORDER, 20 + 2 * BORDER
    assert img.shape == (3 * (16 + frame_h + 4) + 4, 4 + 2 * (frame_w + 4), 3)  # 3 ids (junk left out), 2 each
    # id 3's first picture is its camera-0 image (crops[1]), its last the camera-2 one (crops[0])
    first = img[16 + BORDER:16 + BORDER + 40, 4 + BORDER:4 + BORDER + 20].astype(int)
    want = cv2.resize(cv2.imread(crops[1]), (20, 40), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(first - want).mean() < 2
    capped = cv2.imread(str(plot_identities(crops, pids, cams, tmp_path / "cap.png", max_identities=1)))
    assert capped.shape[0] == 16 + 128 + 2 * BORDER + 4 + 4
    with pytest.raises(ValueError, match="8 paths need as many pids and camids"):
        plot_identities(crops, pids[:3], cams, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no identity to show"):
        plot_identities(crops, [-1] * 8, cams, tmp_path / "none.png")
