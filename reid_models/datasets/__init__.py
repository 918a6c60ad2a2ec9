"""Re-ID dataset readers for the published folder layouts; ``build_dataset(name, root)``.

| name            | reader                          | layout (root = that folder or its parent)                  |
|-----------------|---------------------------------|------------------------------------------------------------|
| market1501      | market1501.read_market1501      | Market-1501-v15.09.15/{bounding_box_train,query,          |
|                 |                                 |   bounding_box_test}                                       |
| dukemtmc        | dukemtmc.read_dukemtmc          | DukeMTMC-reID/{bounding_box_train,query,bounding_box_test} |
| cuhk03          | cuhk03.read_cuhk03 (variant)    | cuhk03-np/{labeled,detected}/... or cuhk03/ raw + protocol .mat |
| cuhk03_labeled  | cuhk03, variant='labeled'       |                                                            |
| cuhk03_detected | cuhk03, variant='detected'      |                                                            |
| msmt17          | msmt17.read_msmt17              | MSMT17_V1/{train,test,list_*.txt} or                       |
|                 |                                 |   MSMT17_V2/{mask_train_v2,mask_test_v2,list_*.txt}        |
| partial_reid    | partial.read_partial_reid       | Partial_REID/{partial_body_images,whole_body_images} (test only) |
| partial_ilids   | partial.read_partial_ilids      | PartialiLIDS/{Probe,Gallery} (test only)                   |
| custom          | custom.read_custom              | Market-style folder, or CSV path,pid,camid,split           |
| mot             | mot.read_mot (test only)        | a video (or img1/) + gt/gt.txt (MOTChallenge); crops cached |

Every reader returns a ReIDDataset; a wrong layout raises DatasetLayoutError (a ValueError) with
one line saying what was expected where.
"""
from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable

from .base import DatasetLayoutError, Item, ReIDDataset
from .cuhk03 import read_cuhk03
from .custom import read_custom
from .dukemtmc import read_dukemtmc
from .market1501 import read_market1501
from .mot import read_mot
from .msmt17 import read_msmt17
from .partial import read_partial_ilids, read_partial_reid

DATASETS: dict[str, Callable[..., ReIDDataset]] = {
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "cuhk03": read_cuhk03,
    "cuhk03_labeled": functools.partial(read_cuhk03, variant="labeled"),
    "cuhk03_detected": functools.partial(read_cuhk03, variant="detected"),
    "msmt17": read_msmt17,
    "partial_reid": read_partial_reid,
    "partial_ilids": read_partial_ilids,
    "custom": read_custom,
    "mot": read_mot,
}


def build_dataset(name: str, root: str | os.PathLike, **options) -> ReIDDataset:
    """Read dataset ``name`` (a key of DATASETS) from ``root`` with reader ``options``.

    Unknown names or options raise ValueError naming the allowed ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    reader = DATASETS[name]
    params = {k: p for k, p in inspect.signature(reader).parameters.items() if k != "root"}
    allowed = list(params)
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no option {unknown[0]!r}; options: {', '.join(allowed) or '(none)'}"
        )
    for key, value in options.items():
        if isinstance(params[key].default, bool) and not isinstance(value, bool):
            raise ValueError(f"dataset {name!r} option {key} is true or false, got {value!r}")
    return reader(root, **options)


def parse_dataset_options(assignments: list[str]) -> dict:
    """``["include_val=true", "version=v2"]`` (``--dataset-option``) -> ``{"include_val": True, "version": "v2"}``;
    values are read as YAML scalars. ValueError for an item without ``=``."""
    import yaml

    options = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--dataset-option expects KEY=VALUE such as include_val=true, got {text!r}")
        try:
            options[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            options[key.strip()] = raw
    return options


__all__ = ["DATASETS", "DatasetLayoutError", "Item", "ReIDDataset", "build_dataset", "parse_dataset_options"]
