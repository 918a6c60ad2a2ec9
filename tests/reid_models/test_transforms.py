"""Train/test transforms: output shapes, ImageNet normalisation, flip, pad+crop, random erasing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reid_models.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

SIZE = (32, 16)


def constant_image(rgb=(200, 100, 50), size=(70, 30)) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0], 3), rgb, dtype=np.uint8))


def test_test_transform_resizes_and_normalises():
    tensor = build_transforms({"size": list(SIZE)}, train=False)(constant_image())
    assert tensor.shape == (3, *SIZE) and tensor.dtype == torch.float32
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(tensor, expected.view(3, 1, 1).expand_as(tensor), atol=1e-5)
    raw = build_transforms({"size": SIZE, "normalize": False}, train=False)(constant_image())
    assert torch.allclose(raw, torch.tensor([200, 100, 50]).view(3, 1, 1).expand_as(raw) / 255, atol=1e-6)


def test_train_transform_shape_flip_and_pad_crop():
    # left half black, right half white: a flip moves the white half, a crop shifts the border
    pixels = np.zeros((SIZE[0], SIZE[1], 3), dtype=np.uint8)
    pixels[:, SIZE[1] // 2 :] = 255
    image = Image.fromarray(pixels)
    options = {"size": SIZE, "random_erasing": 0.0, "normalize": False}
    torch.manual_seed(0)
    flipped = build_transforms({**options, "flip": 1.0, "pad": 0}, train=True)(image)
    assert flipped.shape == (3, *SIZE)
    assert flipped[:, :, 0].min() == 1.0 and flipped[:, :, -1].max() == 0.0
    cropped = [build_transforms({**options, "flip": 0.0, "pad": 10}, train=True)(image) for _ in range(20)]
    assert all(c.shape == (3, *SIZE) for c in cropped)
    assert any(not torch.equal(c, torch.from_numpy(pixels).permute(2, 0, 1) / 255) for c in cropped)
    assert any((c == 0).all(dim=0).all(dim=1).any() for c in cropped)  # zero padding rows came in


def test_random_erasing_changes_a_rectangle():
    options = {"size": SIZE, "flip": 0.0, "pad": 0}
    plain = build_transforms({**options, "random_erasing": 0.0}, train=True)(constant_image())
    torch.manual_seed(0)
    erased = build_transforms({**options, "random_erasing": 1.0, "erasing_value": 0.0}, train=True)(constant_image())
    changed = (erased != plain).any(dim=0)
    assert changed.any() and not changed.all()
    rows, cols = torch.nonzero(changed, as_tuple=True)
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert int(changed.sum()) == int(area)  # one filled rectangle
    assert torch.all(erased[:, changed] == 0.0)  # value 0 = the mean colour after normalisation


def test_unknown_or_bad_options_are_errors():
    with pytest.raises(ValueError, match="unknown transform option 'color_jitter'; allowed: size"):
        build_transforms({"color_jitter": 0.2}, train=True)
    with pytest.raises(ValueError, match="size must be"):
        build_transforms({"size": [256]}, train=False)
    with pytest.raises(ValueError, match="random_erasing must be a probability in"):
        build_transforms({"random_erasing": 1.5}, train=True)
