"""The search index beside a store: ``<db>.index/``, derived from the store and rebuildable at any time.

Layout (row k = the k-th indexed sample, in sample-id order):

* ``vectors.f32``: (rows, D) float32, the samples' vectors exactly as stored (memory-mapped, so a
  query reads only the rows it scores); ``sample_id.i64`` / ``track_id.i64``: (rows,) int64;
* ``ann-<rows>.faiss``: a faiss IVF index (8-bit scalar quantizer, inner product) over the first
  ``ann_rows`` rows, for broad queries; its candidates are re-scored exactly from ``vectors.f32``;
* ``coded-<rows>/``: the same first rows sorted by track, one byte per dimension
  (:mod:`pipeline.search.coded`), for selective filters: they are scored on it, and only the rows that
  can change the answer are re-scored exactly from ``vectors.f32``; built with the ANN index;
* ``removed.i64``: sample ids taken out by :func:`remove_samples` (retention, erasure) until the next rebuild;
* ``meta.json``: rows, watermark (largest indexed sample id), ann file and rows, and the store's
  fingerprint (first run, embedder id, dimension).

Crash safety: the column files only grow; an update appends, fsyncs, and only then writes a new
``meta.json`` (temp file + fsync + rename), so a kill leaves the previous, complete index (bytes past
``rows`` are ignored and cut by the next update). A new ANN file gets a new name before meta points at
it; a rebuild is written to ``<db>.index.tmp`` and renamed into place. Updates take ``<db>.index.lock``.

Staleness: an index whose fingerprint differs from the store's (another embedder after ``pipeline
reembed``, another store file at the path) is ignored by queries and rebuilt by :func:`update_index`.
Samples committed after the watermark are read from the store by each query (exactly), so a
query never misses a committed sample and never reads the whole store into RAM.

PostgreSQL stores: the folder is local to the machine that queries (:func:`pipeline.store.sidecar_base`,
``$CAMREID_INDEX_DIR``), updated incrementally from the server. Several writers commit sample ids out
of order, so ``meta.json`` also lists ``pending`` id ranges below the watermark seen missing: queries
read them from the store, updates index what arrived in them and give a range up once every
transaction running when it was seen has ended (:func:`_append_columns`). Other machines erase there,
so a query first checks the store's sample count below the watermark (:meth:`SearchIndex.deleted_since`)
and ignores an index holding a deleted sample.
"""
from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.config import SearchConfig
from pipeline.store import StoreReader, is_url, require_store, sidecar_base
from reid_models.common import UserError

from .coded import CodedRows, build_coded, fsync_path

META = "meta.json"
VECTORS, SAMPLE_IDS, TRACK_IDS, REMOVED = "vectors.f32", "sample_id.i64", "track_id.i64", "removed.i64"
FORMAT = 1
SCAN_CHUNK = 32768  # rows per read when scanning or scoring many rows (32768 x 512-d float32 = 64 MiB)
PREAD_ROWS = 4096  # up to this many scattered rows are read with pread, more through the memory map
RSS_BUDGET_MIB = 768  # a query process holding more than this gives the vector pages it mapped back


def _resident_mib() -> float:
    """This process's resident memory, MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def embedder_dir(db: str | Path) -> Path:
    """Where the store's embedder is kept as ONNX for light photo queries: ``<db>.embedder`` beside it
    (a PostgreSQL store: in its local folder, :func:`pipeline.store.sidecar_base`)."""
    base = sidecar_base(db)
    return base.with_name(base.name + ".embedder")


def export_query_embedder(db: str | Path, embedder=None) -> str | None:
    """Export the store's embedder (``embedder``, or rebuilt from the store's spec) to ONNX in
    :func:`embedder_dir`, unless there already; the photo query then needs neither torch nor the network
    code. Returns a one-line reason when it cannot (onnx/onnxruntime missing, parity failed), else None."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnx/onnxruntime not installed (pip install camreid[onnx]): photo queries import torch"
    from pipeline.stages.embed_onnx import OnnxEmbedder, export_onnx

    folder = embedder_dir(db)
    if embedder is None:
        with StoreReader(db) as store:
            spec, name = store.embedder_spec, store.embedder_id
        if OnnxEmbedder.load(folder, name) is not None:
            return None
        if "sha256" not in spec:
            return f"embedder {name} cannot be rebuilt from the store's spec"
        from pipeline.stages.embed import Embedder

        try:
            embedder = Embedder.from_spec(spec, device="cpu")
        except (ValueError, OSError) as e:
            return f"embedder {name} cannot be rebuilt ({e})"
        if embedder.embedder_id != name:
            return f"embedder {name} cannot be rebuilt from the store's spec"
    try:
        export_onnx(embedder, folder)
    except (RuntimeError, OSError) as e:
        return f"embedder not exported to ONNX ({e}): photo queries import torch"
    return None


def index_dir(db: str | Path) -> Path:
    """The index folder of store ``db``: ``<db>.index`` beside it; a PostgreSQL store's in a local folder
    of this machine (:func:`pipeline.store.sidecar_base`: ``$CAMREID_INDEX_DIR``, default
    ``~/.cache/camreid/index/<hash of host, port, database>/store.index``)."""
    base = sidecar_base(db)
    return base.with_name(base.name + ".index")


def _in_ranges(ids: np.ndarray, ranges) -> np.ndarray:
    """(len(ids),) bool: which ids lie in one of the inclusive ``(lo, hi, ...)`` ranges."""
    hit = np.zeros(len(ids), bool)
    for r in ranges:
        hit |= (ids >= r[0]) & (ids <= r[1])
    return hit


def _gaps(prev: int, ids: np.ndarray) -> list[tuple[int, int]]:
    """The inclusive id ranges missing between ``prev`` and the ascending ``ids`` (and between them)."""
    full = np.concatenate([[prev], ids])
    at = np.flatnonzero(np.diff(full) > 1)
    return [(int(full[i]) + 1, int(full[i + 1]) - 1) for i in at]


def _split(lo: int, hi: int, found: np.ndarray) -> list[tuple[int, int]]:
    """The inclusive range ``lo..hi`` minus the ascending ``found`` ids in it, as ranges."""
    if len(found) == 0:
        return [(lo, hi)]
    out = _gaps(lo - 1, found)
    if found[-1] < hi:
        out.append((int(found[-1]) + 1, hi))
    return out


def index_state(db: str | Path) -> tuple:
    """What changes when store ``db``'s index changes on disk: (inode, mtime ns, size) of its meta.json and
    of its removed-samples file (each written by rename), None for a file that is not there."""
    folder = index_dir(db)
    out = []
    for name in (META, REMOVED):
        try:
            st = (folder / name).stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


@dataclass(frozen=True)
class IndexMeta:
    """What ``meta.json`` holds: rows indexed, watermark = largest indexed sample id, ann_file/ann_rows =
    the ANN index and how many leading rows it covers (0: none), max_track = largest track id indexed."""

    fingerprint: str
    dim: int
    rows: int
    watermark: int
    max_track: int
    ann_file: str | None
    ann_rows: int
    updated: float
    format: int = FORMAT
    pending: tuple = ()  # [lo, hi, xmax, seen]: id ranges below the watermark not (yet) committed (PostgreSQL)
    coded_dir: str | None = None  # the track-ordered 8-bit copy of the first coded_rows rows (.coded)
    coded_rows: int = 0


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def _read_meta(folder: Path) -> IndexMeta | None:
    try:
        data = json.loads((folder / META).read_text())
        meta = IndexMeta(**data)
    except (OSError, ValueError, TypeError):
        return None
    return meta if meta.format == FORMAT else None


class SearchIndex:
    """An open, read-only view of a store's index (see module docstring); ``SearchIndex.open(store)``.
    ``pending``: the meta's id ranges below the watermark a query also reads from the store (PostgreSQL).

    vectors (rows, D) float32, sample_ids / track_ids (rows,) int64: memory maps; removed: sorted sample
    ids removed since the last rebuild. ``ann``: the faiss index, loaded on first use.
    """

    def __init__(self, folder: Path, meta: IndexMeta) -> None:
        self.folder, self.meta = folder, meta
        n, d = meta.rows, meta.dim
        self.vectors = np.memmap(folder / VECTORS, np.float32, "r", shape=(n, d)) if n else np.zeros((0, d), np.float32)
        self.sample_ids = np.memmap(folder / SAMPLE_IDS, np.int64, "r", shape=(n,)) if n else np.zeros(0, np.int64)
        self.track_ids = np.memmap(folder / TRACK_IDS, np.int64, "r", shape=(n,)) if n else np.zeros(0, np.int64)
        removed = folder / REMOVED
        self.removed = np.fromfile(removed, np.int64) if removed.is_file() else np.zeros(0, np.int64)
        self._ann = None
        # opened now, like the maps: a rebuild renamed into place later must not mix with this meta
        self._fd: int | None = os.open(folder / VECTORS, os.O_RDONLY) if n else None
        self.coded: CodedRows | None = (CodedRows.open(folder / meta.coded_dir, meta.coded_rows, d)
                                        if meta.coded_dir and meta.coded_rows else None)
        """The track-ordered 8-bit copy of the first ``meta.coded_rows`` rows (:mod:`.coded`), or None."""

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()

    @classmethod
    def open(cls, store: StoreReader) -> tuple[SearchIndex | None, str]:
        """(the store's index, "") when one is there and current, else (None, why not). On a PostgreSQL
        store (other machines erase and purge) the index is also checked against the store's sample count
        below its watermark, so an index holding a sample deleted since is never used."""
        folder = index_dir(store.path)
        meta = _read_meta(folder)
        if meta is None:
            return None, f"no search index at {folder}"
        if meta.fingerprint != store.fingerprint() or meta.dim != store.embedding_dim:
            return None, f"search index {folder} was built for another store or embedder"
        sizes = {VECTORS: meta.rows * meta.dim * 4, SAMPLE_IDS: meta.rows * 8, TRACK_IDS: meta.rows * 8}
        for name, size in sizes.items():
            f = folder / name
            if (not f.is_file() and size) or (f.is_file() and f.stat().st_size < size):
                return None, f"search index {folder} is incomplete ({name})"
        index = cls(folder, meta)
        if is_url(str(store.path)) and index.deleted_since(store):
            index.close()
            return None, (f"search index {folder} is out of date (samples were deleted from the store since); "
                          "the next `pipeline index` rebuilds it")
        return index, ""

    def deleted_since(self, store: StoreReader) -> bool:
        """True when the store no longer holds every indexed sample not marked removed (deleted by another
        machine's erasure or retention), or holds one below the watermark the index has not seen:
        two COUNT queries below the watermark (PostgreSQL stores, where other machines delete)."""
        m = self.meta
        marked = self.removed[(self.removed <= m.watermark) & ~_in_ranges(self.removed, m.pending)]
        present = store.count_samples_outside(m.watermark, m.pending) - store.count_present(marked)
        return present != self.kept

    @property
    def kept(self) -> int:
        """Indexed rows minus those removed (:func:`remove_samples`)."""
        m = self.meta
        gone = self.removed[(self.removed <= m.watermark) & ~_in_ranges(self.removed, m.pending)]
        return m.rows - len(gone)

    @property
    def pending(self) -> list[tuple[int, int]]:
        """Inclusive sample id ranges below the watermark not in the index (a query reads them from the store)."""
        return [(int(r[0]), int(r[1])) for r in self.meta.pending]

    @property
    def rows(self) -> int:
        return self.meta.rows

    @property
    def ann(self):
        """The faiss index over the first ``meta.ann_rows`` rows (memory-mapped), or None."""
        if self._ann is None and self.meta.ann_file and self.meta.ann_rows:
            path = self.folder / self.meta.ann_file
            faiss = import_faiss()
            if faiss is None or not path.is_file():
                return None
            self._ann = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
            if self._ann.ntotal != self.meta.ann_rows:
                self._ann = None
                self.meta = IndexMeta(**{**asdict(self.meta), "ann_rows": 0, "ann_file": None})
        return self._ann

    def alive(self, rows: np.ndarray) -> np.ndarray:
        """The given rows minus those of removed samples."""
        if len(self.removed) == 0 or len(rows) == 0:
            return rows
        return rows[~np.isin(np.asarray(self.sample_ids[rows]), self.removed)]

    def rows_of(self, track_lut: np.ndarray) -> np.ndarray:
        """Rows (ascending) whose track is marked in ``track_lut`` (bool, indexed by track id, covering
        ``meta.max_track``)."""
        if self.rows == 0:
            return np.zeros(0, np.int64)
        mask = np.empty(self.rows, bool)
        for lo in range(0, self.rows, 1 << 22):
            mask[lo:lo + (1 << 22)] = track_lut[self.track_ids[lo:lo + (1 << 22)]]
        return self.alive(np.flatnonzero(mask))

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) float32 stored vectors of a few rows, read with one ``pread`` each: a memory map
        would map whole large page-cache folios (up to 2 MiB) per row touched into this process."""
        d = self.meta.dim
        out = np.empty((len(rows), d), np.float32)
        buf, size = memoryview(out).cast("B"), d * 4
        for i, r in enumerate(rows.tolist()):
            os.preadv(self._fd, [buf[i * size:(i + 1) * size]], r * size)
        return out

    def score(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """(len(rows),) float32 cosines of the query with the given rows' stored vectors (exact). Up to
        PREAD_ROWS rows are read row by row; more through the memory map, whose pages this process gives
        back (they stay in the page cache) once it holds more than RSS_BUDGET_MIB, so its memory stays
        bounded while repeated queries over the same rows stay fast."""
        if len(rows) <= PREAD_ROWS:
            return self.read_rows(rows) @ q if len(rows) else np.zeros(0, np.float32)
        out = np.empty(len(rows), np.float32)
        try:
            for lo in range(0, len(rows), SCAN_CHUNK):
                out[lo:lo + SCAN_CHUNK] = self.vectors[rows[lo:lo + SCAN_CHUNK]] @ q
        finally:
            if _resident_mib() > RSS_BUDGET_MIB:
                self.release()
        return out

    def release(self) -> None:
        """Unmap the vector pages this process touched (MADV_DONTNEED; the file stays in the page cache)."""
        mapped = getattr(self.vectors, "_mmap", None)
        if mapped is not None:
            try:
                mapped.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError, AttributeError):
                pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def scan(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, (n, D) float32 block) over every row, read with plain reads (page cache, not this
        process's memory, holds the file)."""
        with open(self.folder / VECTORS, "rb") as f:
            for lo in range(0, self.rows, SCAN_CHUNK):
                n = min(SCAN_CHUNK, self.rows - lo)
                yield lo, np.fromfile(f, np.float32, n * self.meta.dim).reshape(n, self.meta.dim)

    def ann_rows(self, q: np.ndarray, k: int, nprobe: int, rows_mask: np.ndarray | None = None) -> np.ndarray:
        """Up to ``k`` candidate rows (< meta.ann_rows) for the (D,) query from the ANN index; ``rows_mask``
        (bool over the ANN rows) restricts the search to those rows. Empty without an ANN index."""
        ann = self.ann
        if ann is None:
            return np.zeros(0, np.int64)
        faiss = import_faiss()
        params = faiss.SearchParametersIVF(nprobe=int(nprobe))
        if rows_mask is not None:
            bits = np.packbits(rows_mask[:self.meta.ann_rows], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(self.meta.ann_rows, faiss.swig_ptr(bits))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP's spinning workers only cost on a shared machine
        try:
            _, found = ann.search(q.reshape(1, -1).astype(np.float32), int(k), params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        found = found[0]
        return self.alive(np.sort(found[found >= 0]).astype(np.int64))


def import_faiss():
    """The faiss module, or None where it is not installed (search then stays exact)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


# ------------------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class IndexReport:
    """What :func:`update_index` did: rows now indexed, rows added by this call, whether it rebuilt the
    columns (why), whether it (re)built the ANN index, and seconds taken."""

    path: str
    rows: int
    added: int
    rebuilt: str
    ann_rows: int
    ann_built: bool
    seconds: float

    def format(self) -> str:
        how = f"rebuilt ({self.rebuilt})" if self.rebuilt else f"{self.added} samples appended"
        ann = (f"ANN index over {self.ann_rows} samples" + (" (new)" if self.ann_built else "")
               if self.ann_rows else "no ANN index (exact search)")
        return f"index {self.path}: {self.rows} samples, {how}; {ann}; {self.seconds:.1f} s"


@contextmanager
def _index_lock(db: Path, wait: bool, url: bool = False) -> Iterator[bool]:
    """Hold ``<db>.index.lock`` (flock); yields False at once instead when ``wait`` is False and it is held."""
    path = db.with_name(db.name + ".index.lock")
    try:
        if url:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if url:  # a PostgreSQL store's local folder (pipeline.store.sidecar_base)
            raise UserError(f"cannot write the search index in {db.parent} ({e.strerror}): set "
                            "CAMREID_INDEX_DIR (or --index-dir) to a writable folder") from None
        raise UserError(f"cannot write the search index beside {db} ({e.strerror}): "
                        "index a copy of the store in a writable folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


SETTLE_S = 60.0  # a pending id range is given up only this long after it was seen (and its writers ended)


def _append_columns(folder: Path, meta: IndexMeta, store: StoreReader, progress: Callable[[int], None] | None,
                    upto_id: int | None = None) -> IndexMeta:
    """Append the store's samples after ``meta.watermark`` (up to ``upto_id``) to the column files, fsync
    them, and return the new meta (not yet written).

    On PostgreSQL (several writers commit sample ids out of order) first append the samples committed
    since in ``meta.pending``, the id ranges below the watermark seen missing, and record the ranges
    missing among the new samples with the snapshot's xmax; a range is given up once every transaction
    that ran when it was seen has ended (``commit_horizon`` xmin >= that xmax) and SETTLE_S have passed:
    its ids were rolled back or deleted and never come."""
    d = meta.dim
    horizon = store.commit_horizon()
    files = {name: open(folder / name, "r+b" if (folder / name).exists() else "w+b")
             for name in (VECTORS, SAMPLE_IDS, TRACK_IDS)}
    try:
        for name, f in files.items():  # cut what a killed update left past the committed rows
            f.truncate(meta.rows * (d * 4 if name == VECTORS else 8))
            f.seek(0, os.SEEK_END)
        rows, watermark, max_track = meta.rows, meta.watermark, meta.max_track

        def write(ids: np.ndarray, tracks: np.ndarray, emb: np.ndarray) -> None:
            nonlocal rows, max_track
            files[VECTORS].write(np.ascontiguousarray(emb, np.float32).tobytes())
            files[SAMPLE_IDS].write(ids.tobytes())
            files[TRACK_IDS].write(tracks.tobytes())
            rows, max_track = rows + len(ids), max(max_track, int(tracks.max()))
            if progress is not None:
                progress(len(ids))

        pending: list = []
        if meta.pending:
            ids, tracks, emb = store.samples_in_ranges([(r[0], r[1]) for r in meta.pending])
            if len(ids):
                write(ids, tracks, emb)
            for lo, hi, xmax, seen in meta.pending:
                found = ids[(ids >= lo) & (ids <= hi)]
                pending += [[a, b, xmax, seen] for a, b in _split(int(lo), int(hi), found)]
        new_gaps: list[tuple[int, int]] = []
        for ids, tracks, emb in store.iter_samples(after_id=meta.watermark, chunk=SCAN_CHUNK, upto_id=upto_id):
            write(ids, tracks, emb)
            if horizon is not None:
                new_gaps += _gaps(watermark, ids)
            watermark = int(ids[-1])
        if horizon is not None:
            now, after = time.time(), store.commit_horizon()  # xmax after the reads: any gap's writer is below it
            pending = [r for r in pending if not (after[0] >= r[2] and now - r[3] >= SETTLE_S)]
            pending += [[lo, hi, after[1], now] for lo, hi in new_gaps]
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            f.close()
    return IndexMeta(**{**asdict(meta), "rows": rows, "watermark": watermark, "max_track": max_track,
                        "updated": time.time(), "pending": pending})


def _nlist(rows: int, cfg: SearchConfig) -> int:
    return cfg.nlist or int(np.clip(round(np.sqrt(rows)), 16, 65536))


def _build_ann(folder: Path, meta: IndexMeta, cfg: SearchConfig, progress: Callable[[int], None] | None) -> str:
    """Train and fill an IVF-SQ8 inner-product index over every row; write it as ``ann-<rows>.faiss``
    (temp file, fsync, rename). Returns its file name."""
    faiss = import_faiss()
    n, d = meta.rows, meta.dim
    vectors = np.memmap(folder / VECTORS, np.float32, "r", shape=(n, d))
    nlist = _nlist(n, cfg)
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.train(np.ascontiguousarray(vectors[train]))
    for lo in range(0, n, SCAN_CHUNK):
        index.add(np.ascontiguousarray(vectors[lo:lo + SCAN_CHUNK]))
        if progress is not None:
            progress(min(SCAN_CHUNK, n - lo))
    name = f"ann-{n}.faiss"
    tmp = folder / (name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / name)
    fsync_path(folder)
    return name


def _bar(total: int, desc: str, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True, disable=not show)


def update_index(db: str | Path, rebuild: bool = False, cfg: SearchConfig = SearchConfig(), progress: bool = False,
                 wait: bool = True, upto_id: int | None = None) -> IndexReport | None:
    """Bring the index of store ``db`` up to date: append the samples committed since its watermark, or
    rebuild it from scratch (``rebuild``, or when it is missing, stale or damaged); then (re)build the ANN
    index when the samples outside it exceed ``cfg.ann_stale_fraction`` of it (none below
    ``cfg.ann_min_rows`` samples or without faiss). ``wait=False`` returns None at once when another
    process is updating it. ``upto_id`` (tests): index samples up to this id only. UserError where the
    store's folder is read-only."""
    t0 = time.perf_counter()
    db = str(db).strip() if is_url(db) else require_store(db)
    folder = index_dir(db)
    with _index_lock(sidecar_base(db), wait, url=is_url(db)) as held:
        if not held:
            return None
        with StoreReader(db) as store:
            why = "requested" if rebuild else ""
            current, reason = (None, "") if rebuild else SearchIndex.open(store)
            n_store, top_id = store.sample_extent()
            if current is not None:
                meta = current.meta
                if top_id < meta.watermark or (current.deleted_since(store) if is_url(db) else
                                               store.sample_extent(meta.watermark)[0] < current.kept):
                    why = "samples were deleted from the store since"
                    current = None
            else:
                why = why or reason
            base = folder
            if current is None:
                base = folder.with_name(folder.name + ".tmp")
                shutil.rmtree(base, ignore_errors=True)
                base.mkdir()
                meta = IndexMeta(store.fingerprint(), store.embedding_dim, 0, 0, 0, None, 0, time.time())
                todo = n_store
            else:
                meta = current.meta
                todo = max(0, top_id - meta.watermark)  # an upper bound for the progress bar
            bar = _bar(todo, "index", progress and todo > 0)
            new = _append_columns(base, meta, store, bar.update, upto_id)
            bar.close()
        ann_built = False
        faiss_ok = import_faiss() is not None
        old_ann = old_coded = None

        def stale(covered: int) -> bool:
            return new.rows >= cfg.ann_min_rows and (
                covered == 0 or new.rows - covered > cfg.ann_stale_fraction * max(covered, 1))

        build_ann, build_copy = faiss_ok and stale(new.ann_rows), stale(new.coded_rows)
        if (build_ann or build_copy) and current is not None:
            # the new column rows must be durable before the ANN index or the copy covers them
            _write_atomic(base / META, json.dumps(asdict(new)).encode())
        if build_ann:
            bar = _bar(new.rows, "ANN index", progress)
            name = _build_ann(base, new, cfg, bar.update)
            bar.close()
            old_ann = new.ann_file
            new = IndexMeta(**{**asdict(new), "ann_file": name, "ann_rows": new.rows})
            ann_built = True
        if build_copy:
            bar = _bar(new.rows, "filter copy", progress)
            coded = build_coded(base, new.rows, new.dim, VECTORS, SAMPLE_IDS, TRACK_IDS, bar.update)
            bar.close()
            old_coded = new.coded_dir
            new = IndexMeta(**{**asdict(new), "coded_dir": coded, "coded_rows": new.rows})
        _write_atomic(base / META, json.dumps(asdict(new)).encode())
        if current is None:  # swap the rebuilt folder in
            (base / REMOVED).unlink(missing_ok=True)
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if folder.exists():
                os.replace(folder, old)
            os.replace(base, folder)
            fsync_path(folder.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if old_ann and old_ann != new.ann_file:
                (folder / old_ann).unlink(missing_ok=True)
            if old_coded and old_coded != new.coded_dir:
                shutil.rmtree(folder / old_coded, ignore_errors=True)
    return IndexReport(str(folder), new.rows, new.rows - (0 if current is None else meta.rows), why,
                       new.ann_rows, ann_built, time.perf_counter() - t0)


def remove_samples(db: str | Path, sample_ids) -> int:
    """Take samples out of the index of store ``db`` (for retention and erasure: call it with the ids of
    samples deleted from the store, before or after deleting them). Queries skip them at once; the next
    rebuild (``pipeline index --db DB --rebuild``, or any update that sees the store shrank) drops them
    for good. ``db`` may be a PostgreSQL URL: this machine's copy (other machines' copies notice the
    deletion by count, :meth:`SearchIndex.deleted_since`). Returns how many ids are now marked removed;
    0 without an index."""
    folder = index_dir(db)
    ids = np.asarray(list(sample_ids), np.int64)
    if is_url(db) and not folder.parent.is_dir():
        return 0  # this machine keeps no copy of that store's index
    with _index_lock(sidecar_base(db), wait=True, url=is_url(db)):
        if _read_meta(folder) is None:
            return 0
        path = folder / REMOVED
        old = np.fromfile(path, np.int64) if path.is_file() else np.zeros(0, np.int64)
        removed = np.union1d(old, ids).astype(np.int64)
        _write_atomic(path, removed.tobytes())
    return len(removed)


class IndexUpdater:
    """Keeps a store's index current while a run writes it: :meth:`poke` after a commit starts an
    update in a background thread (at most one at a time, at most every ``interval`` seconds), so the
    frame loop never waits for it; :meth:`finish` waits for it and runs a last update. A kill at any
    point leaves a complete index (module docstring) that the next update continues."""

    def __init__(self, db: str | Path, interval: float = 30.0, cfg: SearchConfig = SearchConfig()) -> None:
        self.db, self.interval, self.cfg = Path(db), float(interval), cfg
        self._thread = None
        self._last = time.monotonic()
        self.error: str | None = None

    def _update(self) -> None:
        try:
            update_index(self.db, cfg=self.cfg, wait=False)
        except (UserError, OSError) as e:
            self.error = str(e)

    def poke(self) -> None:
        import threading

        if self.error or time.monotonic() - self._last < self.interval:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._update, name="index-update", daemon=True)
        self._thread.start()

    def finish(self, embedder=None) -> str | None:
        """Wait for a running update, update once more, and export ``embedder`` (the run's) to ONNX for
        light photo queries; returns a one-line warning if the index could not be written (the store is
        complete either way; queries then read it directly)."""
        if self._thread is not None:
            self._thread.join()
        if self.error is None:
            self._update()
        if self.error is not None:
            return f"search index not updated ({self.error}); run python -m pipeline index --db {self.db}"
        if embedder is not None:
            try:
                note = export_query_embedder(self.db, embedder)
            except Exception as e:  # noqa: BLE001 - the ONNX copy is an optimisation; the run's work is stored
                note = f"embedder not exported to ONNX ({type(e).__name__}: {e}); photo queries import torch"
            if note and "not installed" not in note:
                return note
        return None
