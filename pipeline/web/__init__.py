"""The operator web app (``python -m pipeline serve``): search by photo, identity pages with video
segments and corrections, cameras, and the admin pages, over a store read while a run writes it.
See :mod:`.app`."""
from .app import create_app

__all__ = ["create_app"]
