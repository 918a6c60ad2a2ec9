"""The store of everything a run produced: cameras, runs, tracks, boxes, samples, identities.

:class:`TrackStore` writes it (batched, crash-safe commits), :class:`StoreReader` reads it
read-only; both speak in backend-neutral types (:mod:`.base`). Today's backend is SQLite
(:mod:`.schema` holds its versioned schema); another backend (PostgreSQL) plugs in here with the
same writer and reader methods. Nothing outside this package writes SQL.
"""
from . import restage
from .base import Boxes, RunCounts, Samples, StoreBusyError, StoreError, StoreWriteError, TrackRecord, require_store
from .lock import WriterLock, check_writable
from .reader import StoreReader
from .schema import PAGE_SIZE, SCHEMA_VERSION
from .writer import TrackStore

__all__ = ["PAGE_SIZE", "SCHEMA_VERSION", "Boxes", "RunCounts", "Samples", "StoreBusyError", "StoreError",
           "StoreReader", "StoreWriteError", "TrackRecord", "TrackStore", "WriterLock", "check_writable",
           "require_store", "restage"]
