"""pipeline/stages/embed.py: the real generic embedder (ImageNet MobileNetV2 + colour) and reid_models checkpoints
(slow)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.config import EmbedderConfig
from pipeline.stages.embed import Embedder
from pipeline.stages.sampling import crop_boxes
from reid_models.generic import mobilenet_weights_path

pytestmark = pytest.mark.slow  # every test runs the real network
BUS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets" / "bus.jpg"
BUS_PEOPLE = [[46, 384, 216, 907], [211, 391, 347, 872], [657, 254, 809, 887], [1, 379, 188, 908]]
# The same three people in vtest.avi frames 392 and 396 (boxes found by the bundled detector).
VTEST_392 = [[249, 188, 296, 264], [644, 280, 698, 396], [568, 141, 609, 213]]
VTEST_396 = [[255, 192, 300, 267], [667, 289, 728, 407], [574, 136, 622, 208]]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(EmbedderConfig(batch_size=4), device="cpu")


def _vtest_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def test_generic_embedder_embeds_real_people_as_unit_vectors(embedder):
    assert embedder.dim == 1536 and embedder.input_size == (256, 128)
    image = cv2.imread(str(BUS))
    crops = crop_boxes(image, np.array(BUS_PEOPLE))
    v = embedder(crops)  # 4 crops in batches of 4: one forward
    assert v.shape == (4, 1536) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    again = embedder(crops[::-1])[::-1]  # batch order does not matter
    assert np.allclose(v, again, atol=1e-4)
    assert embedder([]).shape == (0, 1536)


def test_same_person_in_nearby_frames_is_closer_than_other_people(embedder, vtest_path):
    a = embedder(crop_boxes(_vtest_frame(vtest_path, 392), np.array(VTEST_392)))
    b = embedder(crop_boxes(_vtest_frame(vtest_path, 396), np.array(VTEST_396)))
    sim = a @ b.T
    for i in range(3):
        others = np.delete(sim[i], i)
        assert sim[i, i] > others.max() + 0.03, sim


def test_embedder_id_identifies_the_weights(embedder, tmp_path):
    from reid_models import create_model, save_checkpoint

    assert embedder.embedder_id.startswith("generic_mnv2_hsv-") and embedder.checkpoint is None
    assert embedder.spec["sha256"].startswith(embedder.embedder_id.split("-")[-1])
    assert Embedder.from_spec(embedder.spec, device="cpu").embedder_id == embedder.embedder_id
    assert mobilenet_weights_path().is_file()

    torch.manual_seed(0)
    model = create_model("bot_r50", num_classes=5, input_size=(64, 32))
    kw = dict(model_name="bot_r50", model_kwargs={"input_size": (64, 32)}, num_classes=5, input_size=(64, 32))
    first = save_checkpoint(tmp_path / "a.pt", model, **kw)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    second = save_checkpoint(tmp_path / "b.pt", model, **kw)
    ea = Embedder(EmbedderConfig(checkpoint=first), device="cpu")
    eb = Embedder(EmbedderConfig(checkpoint=second), device="cpu")
    assert ea.embedder_id.startswith("bot_r50-") and ea.input_size == (64, 32) and ea.dim == 2048
    assert len({ea.embedder_id, eb.embedder_id, embedder.embedder_id}) == 3
    crops = crop_boxes(cv2.imread(str(BUS)), np.array(BUS_PEOPLE[:2]))
    v = ea(crops)
    assert v.shape == (2, 2048) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert Embedder.from_spec(ea.spec, device="cpu").embedder_id == ea.embedder_id
    first.write_bytes(second.read_bytes())  # the weights behind a store changed: refuse
    with pytest.raises(ValueError, match="restore the original weights"):
        Embedder.from_spec(ea.spec, device="cpu")


def test_bad_input_is_a_clear_error(embedder, tmp_path):
    with pytest.raises(ValueError, match="crop 1 is empty"):
        embedder([np.zeros((10, 10, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Embedder(EmbedderConfig(checkpoint=tmp_path / "missing.pt"), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Embedder(device="cuda")
