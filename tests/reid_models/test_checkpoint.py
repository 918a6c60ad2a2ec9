"""Checkpoint helpers: the normalisation a checkpoint was trained with travels with it."""
from reid_models.checkpoint import normalization
from reid_models.transforms import IMAGENET_MEAN, IMAGENET_STD


def test_normalization_comes_from_the_recipe_stored_in_the_checkpoint():
    info = {"config": {"input": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}}
    assert normalization(info) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_normalization_defaults_to_imagenet_without_a_recipe():
    assert normalization({}) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
    assert normalization({"config": None}) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
