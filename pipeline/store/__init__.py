"""The store of everything a run produced: cameras, runs, tracks, boxes, samples, identities.

:class:`TrackStore` writes it (batched, crash-safe commits), :class:`StoreReader` reads it
read-only; both speak in backend-neutral types (:mod:`.base`). The store is a SQLite file (the
default) or a PostgreSQL database (a ``postgresql://`` URL, :mod:`.postgres`); :mod:`.backend`
picks one, :mod:`.schema` holds the one versioned schema. Nothing outside this package writes SQL.
"""
from . import restage
from .backend import is_url, open_backend, sidecar_base, store_location
from .base import (
                   CAMERA_STATES,
                   Boxes,
                   CameraStatusRecord,
                   RunCounts,
                   Samples,
                   StoreBusyError,
                   StoreError,
                   StoreWriteError,
                   TrackRecord,
                   require_store,
)
from .lock import WriterLock, check_writable
from .reader import StoreReader
from .schema import PAGE_SIZE, SCHEMA_VERSION
from .writer import TrackStore

__all__ = ["CAMERA_STATES", "PAGE_SIZE",
           "CameraStatusRecord", "SCHEMA_VERSION", "Boxes", "RunCounts", "Samples", "StoreBusyError", "StoreError",
           "StoreReader", "StoreWriteError", "TrackRecord", "TrackStore", "WriterLock", "check_writable",
           "is_url", "open_backend", "require_store", "restage", "sidecar_base", "store_location"]
