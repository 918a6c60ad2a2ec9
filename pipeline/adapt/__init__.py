"""Site adaptation: fine-tune a re-ID network on a store's own tracks (``python -m pipeline adapt``).

:mod:`.labels` turns tracks into pseudo-identities with certain negatives (co-occurrence) and optional
clusters, :mod:`.crops` cuts their crops again from the source video, :mod:`.train` fine-tunes.
"""
from .settings import AdaptConfig
from .train import AdaptResult, adapt_store

__all__ = ["AdaptConfig", "AdaptResult", "adapt_store"]
