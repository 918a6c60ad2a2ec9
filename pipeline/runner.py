"""The run loop: cameras -> detection -> tracking -> sampling + embedding -> store -> association.

    summary = run_pipeline(load_config("streams/demo.yaml"))
    print(summary.format())

Each loop step takes the frames the cameras have ready (at most one per camera), detects
persons in all of them in one batch, updates each camera's own tracker, embeds the few
sampled boxes of all cameras in one batch, and records boxes, samples and finished tracks in
the store, which commits every ``store.commit_interval`` seconds. Every ``associate_every``
seconds of stream time (and at the end) ended tracks are linked into global identities; on a
PostgreSQL store, written by one worker per camera group, that is left to ``pipeline associate
--follow`` (see :mod:`pipeline.associate`). With a ``retention:`` section, the store is purged at
the start and every ``retention.every_minutes`` of wall time, between two commits, under this
run's writer lock (:mod:`pipeline.access.erasure`; on PostgreSQL beside the other workers' runs, one
worker's purge at a time, skipped while another worker's is under way or recent).

Before any model is loaded and before the run is written to the store, the run takes the store's
writer lock (SQLite: a second run on the same file is refused, naming the run and pid that hold it;
PostgreSQL: runs of other cameras write at once, a second run of one of this run's cameras is
refused) and checks that the store can be written, that the --save-video folder can be written, and that every
file/folder camera opens and fits its roi; a failure there leaves nothing in the store.
Ctrl-C (or SIGTERM) ends every track and links identities, as the end of the files does, before
the exception propagates (a second Ctrl-C stops at once); any error stops the readers, commits
what was recorded and closes the store, so nothing committed is lost. A run that fails before it
stored a track leaves no run row. A run in which no camera delivered a frame fails (IngestError).

``workers`` > 1 (``run --workers N``) splits the cameras into N process groups
(:mod:`pipeline.workers`), each with its own models; this process keeps the lock, the checks above,
the store (the only writer: it writes the groups' records in each camera's order and commits every
``commit_interval``) and association over all groups. ``workers=1`` is the loop above, unchanged.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.access.erasure import PurgeReport, RetentionTimer
from pipeline.annotate import AnnotatedVideoWriter
from pipeline.associate import CrossCameraAssociator
from pipeline.config import PipelineConfig, config_to_dict, load_config
from pipeline.ingest import IngestError, MultiCameraReader, camera_state
from pipeline.search.index import IndexUpdater
from pipeline.stages.build import Stages, build_stages
from pipeline.stages.step import FrameRecord, FrameStepper
from pipeline.store import RunCounts, TrackStore, WriterLock, open_backend, store_location
from pipeline.types import Frame
from pipeline.workers import (
    CamerasEnded,
    CameraStates,
    GroupDied,
    GroupDone,
    GroupFailed,
    GroupStep,
    WorkerPool,
    split_cameras,
)
from reid_models.common import one_line

STAGES = ("read", "detect", "track", "embed", "store", "associate")


def no_frames_error(last_errors: dict[str, str | None]) -> IngestError:
    """The one-line error of a run in which no camera delivered a frame; last_errors: camera -> its last error."""
    why = "; ".join(f"{c}: {err}" for c, err in last_errors.items() if err)
    return IngestError(f"no camera delivered a frame ({why or 'every source ended at once'}): "
                       "check the sources in the cams.yaml (URL, port, webcam index)")


@dataclass
class StageTimer:
    """Accumulated wall seconds per stage; ``ms_per_frame`` divides by the frames processed."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0

    def add(self, stage: str, t0: float) -> float:
        """Charge ``now - t0`` to ``stage``; returns now (the next stage's t0)."""
        now = time.perf_counter()
        self.seconds[stage] += now - t0
        return now

    def ms_per_frame(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {k: 1000.0 * v / n for k, v in self.seconds.items()}


@dataclass(frozen=True)
class RunSummary:
    """What a run did. frames: frames processed over all cameras; seconds: wall time of the frame loop
    and final association (setup_seconds: loading models, opening cameras); fps: frames / seconds;
    stage_ms: milliseconds per frame for each stage; tracks/samples: rows this run wrote;
    identities: global identities holding this run's tracks; cross_camera: those seen on >= 2 cameras;
    reconnects: live cameras only, times each one's stream was re-established after it dropped.
    workers: process groups the cameras were split into (``--workers``); cpu_seconds: CPU time of the frame
    loop in every process; worker_errors: group -> why it stopped early (its tracks were ended, the
    other groups carried on).
    videos: camera -> annotated MP4 written completely; video_errors: camera -> why its video could not
    be written (e.g. a full disk), the run's data in the store is unaffected. associated: False where
    the run left linking identities to ``pipeline associate --follow`` (a PostgreSQL store)."""

    db_path: str
    run_id: int
    cameras: tuple[str, ...]
    frames: int
    seconds: float
    setup_seconds: float
    stage_ms: dict[str, float]
    tracks: int
    samples: int
    identities: int
    cross_camera: int
    interrupted: bool = False
    videos: dict[str, str] = field(default_factory=dict)
    reconnects: dict[str, int] = field(default_factory=dict)
    video_errors: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    cpu_seconds: float = 0.0
    worker_errors: dict[str, str] = field(default_factory=dict)
    associated: bool = True
    detector_frames: int | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_percent(self) -> float:
        """CPU time of the frame loop over its wall time, all processes and threads (100 = one core busy)."""
        return 100.0 * self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        """A few human-readable lines: totals, then per-stage ms per frame."""
        stages = "  ".join(f"{k} {v:.1f}" for k, v in self.stage_ms.items())
        lines = [f"{'interrupted' if self.interrupted else 'finished'} run {self.run_id} -> {self.db_path}",
                 f"{self.frames} frames from {len(self.cameras)} camera(s)"
                 + (f" in {self.workers} worker groups" if self.workers > 1 else "") + f" in {self.seconds:.1f} s "
                 f"(+ {self.setup_seconds:.1f} s start-up): {self.fps:.2f} frames/s"
                 + (f"; boxes detected on {self.detector_frames}, the tracker filled in the others"
                    if self.detector_frames is not None and self.detector_frames < self.frames else ""),
                 f"ms per frame: {stages}",
                 f"{self.tracks} tracks, {self.samples} samples, {self.identities} global identities, "
                 f"{self.cross_camera} seen on more than one camera"]
        if not self.associated:
            lines.append(f"identities: linked by `python -m pipeline associate --db {self.db_path} --follow` "
                         "(PostgreSQL store: runs leave linking to one associator)")
        if self.reconnects:
            lines.append("reconnects: " + "  ".join(f"{cam} {n}" for cam, n in self.reconnects.items()))
        lines += [f"video {cam}: {path}" for cam, path in self.videos.items()]
        lines += [f"video {cam}: NOT WRITTEN: {why}" for cam, why in self.video_errors.items()]
        lines += [f"{group}: STOPPED EARLY: {why}" for group, why in self.worker_errors.items()]
        return "\n".join(lines)


def _expected_frames(meta: dict, cam, max_frames: int | None) -> int | None:
    """Frames a file/folder camera will deliver (None for live sources or unknown length)."""
    total = meta.get("frame_count") or 0
    if cam.is_live or not total:
        return max_frames
    stop = total if cam.end_frame is None else min(total, cam.end_frame)
    n = len(range(cam.start_frame, stop, cam.stride))
    return n if max_frames is None else min(n, max_frames)


class CameraHeartbeat:
    """Counts each camera's frames and writes its ``camera_status`` row about once per ``interval`` s
    (the store's commit interval), so the row commits with the run's own commits."""

    def __init__(self, interval: float, clock=time.monotonic) -> None:
        self.interval, self.clock = float(interval), clock
        self.frames: dict[str, int] = defaultdict(int)
        self.last_time: dict[str, float] = {}
        self._prev: dict[str, tuple[int, float]] = {}  # camera -> (frames, clock) at its last heartbeat
        self._last = -math.inf

    def saw(self, camera_id: str, timestamp: float, n: int = 1) -> None:
        self.frames[camera_id] += n
        self.last_time[camera_id] = max(self.last_time.get(camera_id, -math.inf), timestamp)

    def due(self) -> bool:
        return self.clock() - self._last >= self.interval

    def write(self, store: TrackStore, states: dict[str, tuple[str, str | None]]) -> None:
        """Upsert every camera's row; states: camera -> (state, the reader's last error or None)."""
        now = self.clock()
        for cam, (state, error) in states.items():
            n, prev = self.frames[cam], self._prev.get(cam)
            fps = (n - prev[0]) / (now - prev[1]) if prev is not None and now > prev[1] else None
            self._prev[cam] = (n, now)
            store.camera_status(cam, state, n, fps if state in ("live", "reconnecting") else None,
                                self.last_time.get(cam), error)
        self._last = now


class Runner:
    """One pipeline run over the cameras of a config (see module docstring). Use :func:`run_pipeline`."""

    def __init__(self, config: PipelineConfig, db_path: str | Path | None = None, device: str = "auto",
                 max_frames: int | None = None, save_video: str | Path | None = None, progress: bool = True,
                 associate_every: float = 5.0, workers: int = 1) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if not 1 <= workers <= len(config.cameras):
            raise ValueError(f"workers must be between 1 and the {len(config.cameras)} camera(s) of the config, "
                             f"got {workers}")
        if workers > 1 and save_video is not None:
            raise ValueError("--save-video needs --workers 1 (the annotated videos are written by one process)")
        self.workers = workers
        self.worker_errors: dict[str, str] = {}
        self._cpu0 = time.process_time()
        self._cpu_children = 0.0  # CPU seconds of the worker groups' loops
        self.cfg = config
        self.db_path = store_location(db_path if db_path is not None else config.store.path)
        self.backend = open_backend(self.db_path)
        self.links = not self.backend.shared  # PostgreSQL: `pipeline associate --follow` links
        self.device, self.max_frames, self.progress = device, max_frames, progress
        self.save_video = None if save_video is None else Path(save_video)
        self.associate_every = float(associate_every)
        self.timer = StageTimer()
        self.run_id: int | None = None  # set when the store has started the run
        self.summary: RunSummary | None = None  # set when run() ends, also when it ends by an exception
        self.store: TrackStore | None = None
        self.writer: AnnotatedVideoWriter | None = None
        self.stepper: FrameStepper | None = None  # the cameras' trackers, once the run has started
        self.detector_frames = 0  # frames whose boxes came from the detector (the others: detector.interval)
        self._open_ids: dict[str, set[int]] = defaultdict(set)  # camera -> local ids recorded and not ended
        self._retention = RetentionTimer(config.retention)
        self.last_purge: PurgeReport | None = None  # what the last periodic retention did
        self.heartbeat: CameraHeartbeat | None = None  # per-camera frames and camera_status rows
        self._reader: MultiCameraReader | None = None

    def _preflight(self) -> tuple[WriterLock, MultiCameraReader]:
        """The checks that need no model, before anything is written: the store's writer lock (and that
        it can be written), the video folder, every camera opened (files/folders: first frame decoded,
        roi checked; live sources start connecting). Returns the held lock and the started reader."""
        lock = self.backend.writer_lock([c.id for c in self.cfg.cameras])  # StoreError / StoreBusyError
        try:
            if self.save_video is not None:
                self.writer = AnnotatedVideoWriter(self.save_video)  # UserError if it cannot be written
            reader = MultiCameraReader(self.cfg.cameras).start()  # IngestError naming the camera
        except BaseException:
            lock.release()
            raise
        return lock, reader

    def _build(self, lock: WriterLock) -> None:
        cfg = self.cfg
        try:
            self.stages: Stages = build_stages(cfg, self.device)
            self.associator = CrossCameraAssociator(cfg.association)
        except BaseException:
            lock.release()
            raise
        embedder = self.stages.embedder
        self.store = TrackStore(dataclasses.replace(cfg.store, path=str(self.db_path)), embedder.embedder_id,
                                embedder.dim, embedder.spec, writer_lock=lock)  # releases the lock if it fails
        # the search index beside a store file follows its commits (a PostgreSQL store: exact search, no index)
        self.index = IndexUpdater(self.db_path) if not self.backend.shared else None

    def run(self) -> RunSummary:
        if self.workers > 1:
            return self._run_groups()
        t_start = time.perf_counter()
        cfg = self.cfg
        t_loop = time.perf_counter()
        interrupted = failed = False
        reader = None
        bar = None
        videos: dict[str, str] = {}
        video_errors: dict[str, str] = {}
        reconnects: dict[str, int] = {}
        try:
            lock, reader = self._preflight()
            self._reader = reader
            self._build(lock)
            store = self.store
            self.run_id = store.start_run(config_to_dict(cfg) | {"max_frames": self.max_frames})
            fps = {}
            self.heartbeat = CameraHeartbeat(store.commit_interval)
            expected = []
            for cam in cfg.cameras:
                meta = reader.readers[cam.id].meta
                store.add_camera(cam.id, str(cam.source), meta)
                fps[cam.id] = float(meta.get("fps") or 10.0) / cam.stride
                expected.append(_expected_frames(meta, cam, self.max_frames))
            self.stepper = FrameStepper(self.stages, fps)
            if self.writer is not None:
                self.writer.fps = fps
            self._warmup([reader.readers[c.id].meta for c in cfg.cameras])
            t_loop = time.perf_counter()
            self._cpu0 = time.process_time()
            if self.progress:
                from tqdm import tqdm

                total = None if any(e is None for e in expected) else sum(expected)
                bar = tqdm(total=total, unit="frame", desc="run", dynamic_ncols=True, file=sys.stderr)
            self._loop(reader, bar)
            self._beat(reader, set(reader.readers))
            if self.timer.frames == 0:
                raise no_frames_error({c: s.last_error for c, s in reader.stats.items()})
            self._finish_cameras(list(self.stepper.trackers))
            t0 = time.perf_counter()
            if self.links:
                self.associator.link(store)
            self.timer.add("associate", t0)
        except KeyboardInterrupt:
            interrupted = True
            if bar is not None:
                bar.close()
                bar = None
            self._wind_up()  # a second Ctrl-C raises out of it at once
            raise
        except BaseException:
            failed = True
            raise
        finally:
            if bar is not None:
                bar.close()
            if reader is not None:
                reader.stop()
                reconnects = {c: s.reconnects for c, s in reader.stats.items() if reader.readers[c].camera.is_live}
            try:
                if self.writer is not None:
                    self._refresh_global_ids()
                    videos = {c: str(p) for c, p in self.writer.close().items()}
                    video_errors = dict(self.writer.failed)
            finally:
                self.summary = self._summary(time.perf_counter() - t_loop, t_loop - t_start, interrupted, videos,
                                             reconnects, video_errors)
                if self.store is not None:
                    self.store.close(discard_if_empty=failed or interrupted)
                    warning = (self.index.finish(self.stages.embedder)
                               if self.index is not None and not (failed or interrupted) else None)
                    if warning:
                        print(f"warning: {warning}", file=sys.stderr)
        return self.summary

    def _wind_up(self) -> None:
        """After Ctrl-C / SIGTERM: end every camera's tracks and link identities, as the end of the files does."""
        if self.run_id is None or self.store is None or self.stepper is None:
            return
        print("interrupted: ending tracks and linking identities (Ctrl-C again to stop at once)", file=sys.stderr)
        if self.heartbeat is not None and self._reader is not None:
            self._beat(self._reader, set(self._reader.readers))
        self._finish_cameras(list(self.stepper.trackers), close=False)
        if self.links:
            self.associator.link(self.store)

    # ------------------------------------------------------------------ loop
    def _apply_retention(self, bar=None) -> None:
        """Apply ``retention:`` when due (at start, then every ``every_minutes``), inside this run's writer
        lock (PostgreSQL: beside the other workers, see pipeline.access.erasure), between two commits."""
        if not self._retention.due():
            return
        from pipeline.access.audit import cli_actor
        from pipeline.access.erasure import purge
        from pipeline.store import StoreError

        self.store.commit()
        try:
            report = purge(self.db_path, self.cfg.retention, cli_actor(), writer_lock=self.store.writer_lock)
        except StoreError as e:
            print(f"warning: retention not applied: {e}", file=sys.stderr)
            return
        self.last_purge = report
        if any(report.counts.values()):
            (bar.write if bar is not None else print)(f"retention: {report.format()}", file=sys.stderr)

    def _loop(self, reader: MultiCameraReader, bar) -> None:
        timer, store = self.timer, self.store
        counts: dict[str, int] = defaultdict(int)
        done: set[str] = set()
        last_assoc = -math.inf
        t0 = time.perf_counter()
        while not reader.finished:
            self._apply_retention(bar)
            batch = reader.next_batch(timeout=0.5)
            if self.max_frames is not None:
                batch = [f for f in batch if counts[f.camera_id] < self.max_frames]
            for f in batch:
                counts[f.camera_id] += 1
                self.heartbeat.saw(f.camera_id, f.timestamp)
            t0 = timer.add("read", t0)
            if batch:
                self._step(batch)
                timer.frames += len(batch)
                if bar is not None:
                    bar.update(len(batch))
                stream_time = max(f.timestamp for f in batch)
                t0 = time.perf_counter()
                if stream_time - last_assoc >= self.associate_every:
                    if last_assoc > -math.inf and self.links:
                        self.associator.link(store)
                        self._refresh_global_ids()
                    last_assoc = stream_time
                    t0 = timer.add("associate", t0)
                if bar is not None:
                    ms = timer.ms_per_frame()
                    wall = sum(timer.seconds.values())
                    bar.set_postfix_str(f"{timer.frames / max(wall, 1e-9):.2f} fps | "
                                        + " ".join(f"{k[:3]} {ms.get(k, 0):.0f}" for k in STAGES) + " ms/frame",
                                        refresh=False)
            # cameras that ended (or reached max_frames) finish their tracks so they can be associated
            ended = [c for c, r in reader.readers.items() if c not in done
                     and (r.ended or (self.max_frames is not None and counts[c] >= self.max_frames))]
            if ended:
                self._finish_cameras(ended)
                done.update(ended)
                t0 = time.perf_counter()
            if self.heartbeat.due():  # also while no frame comes (a stream reconnecting)
                self._beat(reader, done)
                if store.maybe_commit() and self.index is not None:
                    self.index.poke()
                t0 = timer.add("store", t0)
            if self.max_frames is not None and len(done) == len(reader.readers):
                break

    def _beat(self, reader: MultiCameraReader, done: set[str]) -> None:
        """Write every camera's heartbeat from its reader's state (``done``: cameras whose last frame was taken)."""
        stats = reader.stats
        self.heartbeat.write(self.store, {c: (camera_state(s.state, c in done), s.last_error)
                                          for c, s in stats.items()})

    def _step(self, batch: list[Frame]) -> None:
        self._write_records(self.stepper.step(batch, self.timer.add), batch)

    def _write_records(self, records: Sequence[FrameRecord], frames: Sequence[Frame]) -> None:
        """Store ``records``; with --save-video, write ``frames`` (the records' new frames; none for the late
        records of FrameStepper.close, whose frames were written already) and the boxes filled in later."""
        timer, store = self.timer, self.store
        t0 = time.perf_counter()
        for rec in records:
            self._record(rec)
        if store.maybe_commit() and self.index is not None:
            self.index.poke()
        t0 = timer.add("store", t0)
        if self.writer is not None:
            for f, rec in zip(frames, records):
                self.writer.write(f, rec.tracks)
            for rec in records[len(frames):]:
                self.writer.add_boxes(rec.camera_id, rec.index, rec.tracks)
            for rec in records:
                for index, _, boxes in rec.interpolated:
                    self.writer.add_boxes(rec.camera_id, index, boxes)
            timer.add("video", t0)

    def _finish_cameras(self, cameras: list[str], close: bool = True) -> None:
        """End the tracks of ``cameras``; at the end of their streams (``close``, not after Ctrl-C) first give
        the frames after each camera's last detector frame their boxes (FrameStepper.close)."""
        if close:
            self._write_records(self.stepper.close(cameras, self.timer.add), [])
        t0 = time.perf_counter()
        for cam, ids in self.stepper.finish(cameras).items():
            self.store.end_tracks(cam, ids)
            self._open_ids[cam].difference_update(ids)
        self.store.commit()
        self.timer.add("store", t0)

    def _refresh_global_ids(self) -> None:
        if self.writer is not None and self.run_id is not None and self.store is not None:
            self.writer.update_global_ids(self.store.reader.global_ids(self.run_id))

    def _warmup(self, metas: list[dict]) -> None:
        """Warm the detector up on the cameras' frame size when they share one (see Stages.warmup)."""
        shapes = {(m.get("height"), m.get("width")) for m in metas}
        shape = next(iter(shapes)) if len(shapes) == 1 and None not in next(iter(shapes)) else None
        self.stages.warmup(shape, batch=len(metas))

    # ------------------------------------------------------------ worker groups (--workers N > 1)
    def _run_groups(self) -> RunSummary:
        """run() with the cameras split into process groups (:mod:`pipeline.workers`): this process holds the
        lock and the store, writes what the groups send, commits and links identities over all of them."""
        t_start = t_loop = time.perf_counter()
        cfg = self.cfg
        interrupted = failed = False
        pool: WorkerPool | None = None
        bar = None
        reconnects: dict[str, int] = {}
        self._open_ids: dict[str, set[int]] = defaultdict(set)  # camera -> local ids recorded and not ended
        self._group_stats: dict[str, tuple[bool, int, str | None]] = {}
        self._cam_states: dict[str, tuple[str, str | None]] = {c.id: ("live", None) for c in cfg.cameras}
        try:
            lock = self.backend.writer_lock([c.id for c in cfg.cameras])  # StoreError / StoreBusyError
            try:
                MultiCameraReader(cfg.cameras).start().stop()  # every camera opens (IngestError) before models load
                pool = WorkerPool(cfg, split_cameras(cfg.cameras, self.workers), self.device, self.max_frames)
                ready = pool.start()  # a group's start-up error (e.g. DetectorError) is raised here
                self.associator = CrossCameraAssociator(cfg.association)
            except BaseException:
                lock.release()
                raise
            first = ready[0]
            self.store = TrackStore(dataclasses.replace(cfg.store, path=str(self.db_path)), first.embedder_id,
                                    first.embedding_dim, first.embedder_spec, writer_lock=lock)
            store = self.store
            self.run_id = store.start_run(config_to_dict(cfg) | {"max_frames": self.max_frames,
                                                                 "workers": self.workers})
            metas = {cam: meta for r in ready for cam, meta in r.metas.items()}
            expected = []
            for cam in cfg.cameras:
                store.add_camera(cam.id, str(cam.source), metas[cam.id])
                expected.append(_expected_frames(metas[cam.id], cam, self.max_frames))
            store.commit()
            self.heartbeat = CameraHeartbeat(store.commit_interval)
            pool.go()
            t_loop = time.perf_counter()
            self._cpu0 = time.process_time()
            if self.progress:
                from tqdm import tqdm

                total = None if any(e is None for e in expected) else sum(expected)
                bar = tqdm(total=total, unit="frame", desc=f"run ({self.workers} workers)", dynamic_ncols=True,
                           file=sys.stderr)
            self._last_assoc = -math.inf
            with self._interrupts_between_messages():
                while pool.running:
                    self._apply_retention(bar)  # between two commits of this process, the groups' one writer
                    for msg in pool.messages(timeout=0.5):
                        self._take(msg, pool, bar)
                    if self._interrupted:
                        raise KeyboardInterrupt
            self._end_heartbeats()
            if self.timer.frames == 0 and not self.worker_errors:
                raise no_frames_error({c: err for c, (_, _, err) in self._group_stats.items()})
            t0 = time.perf_counter()
            if self.links:
                self.associator.link(store)
            self.timer.add("associate", t0)
        except KeyboardInterrupt:
            interrupted = True
            if bar is not None:
                bar.close()
                bar = None
            self._wind_up_groups(pool)  # a second Ctrl-C raises out of it at once
            raise
        except BaseException:
            failed = True
            raise
        finally:
            if bar is not None:
                bar.close()
            if pool is not None:
                pool.close()
            reconnects = {c: n for c, (live, n, _) in self._group_stats.items() if live}
            try:
                self.summary = self._summary(time.perf_counter() - t_loop, t_loop - t_start, interrupted, {},
                                             reconnects, {})
            finally:
                if self.store is not None:
                    self.store.close(discard_if_empty=failed or interrupted)
        return self.summary

    @contextmanager
    def _interrupts_between_messages(self):
        """Ctrl-C / SIGTERM in the group loop only set ``_interrupted``, which the loop turns into KeyboardInterrupt
        between messages: an interrupt inside a read of the queue's pipe would cut a message in half, and the
        wind-up still reads the groups' last records. Signals ignored at start stay ignored; outside the main
        thread nothing changes."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):
            self._interrupted = True
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                old[sig] = signal.signal(sig, note)
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _take(self, msg, pool: WorkerPool, bar) -> None:
        """Write one message of a group to the store (commits every commit_interval; links every associate_every)."""
        store, timer = self.store, self.timer
        t0 = time.perf_counter()
        if isinstance(msg, CameraStates):
            self._cam_states.update({c.camera_id: (c.state, c.last_error) for c in msg.states})
            if self.heartbeat.due():
                self.heartbeat.write(store, self._cam_states)
            store.maybe_commit()
        elif isinstance(msg, GroupStep):
            for rec in msg.records:
                self._record(rec)
                self.heartbeat.saw(rec.camera_id, rec.timestamp)
            if self.heartbeat.due():
                self.heartbeat.write(store, self._cam_states)
            store.maybe_commit()
            timer.frames += 0 if msg.late else len(msg.records)
            t0 = timer.add("store", t0)
            if bar is not None:
                bar.update(len(msg.records))
            stream_time = max(r.timestamp for r in msg.records)
            if stream_time - self._last_assoc >= self.associate_every:
                if self._last_assoc > -math.inf and self.links:
                    self.associator.link(store)
                self._last_assoc = stream_time
                timer.add("associate", t0)
        elif isinstance(msg, CamerasEnded):
            for cam, ids in msg.finished.items():
                store.end_tracks(cam, ids)
                self._open_ids[cam].difference_update(ids)
            store.commit()
            timer.add("store", t0)
        elif isinstance(msg, GroupDone):
            for stage, sec in msg.seconds.items():
                timer.seconds[stage] += sec
            self._cpu_children += msg.cpu_seconds
            self._group_stats.update(msg.stats)
        elif isinstance(msg, GroupFailed):
            err = msg.error
            why = one_line(err) if isinstance(err, GroupDied) else f"{type(err).__name__}: {one_line(err)}"
            name = pool.describe(msg.group)
            self.worker_errors[name] = why
            print(f"error: {name} stopped: {why}; its tracks were ended, the other groups carry on", file=sys.stderr)
            for cam in pool.groups[msg.group]:
                store.end_tracks(cam.id, sorted(self._open_ids.pop(cam.id, ())))
                self._cam_states[cam.id] = ("failed", why)
            store.commit()
            timer.add("store", t0)

    def _record(self, rec: FrameRecord) -> None:
        """The store writes of one frame (a FrameStepper's record, of this process or of a worker group)."""
        store = self.store
        frame = rec.frame()
        opened = self._open_ids[rec.camera_id]
        self.detector_frames += rec.detected
        for index, stamp, boxes in rec.interpolated:
            store.record_frame(rec.frame(index, stamp), boxes, interpolated=True)
            opened.update(int(i) for i in boxes.track_id[boxes.track_id >= 0])
        store.record_frame(frame, rec.tracks)
        opened.update(int(i) for i in rec.tracks.track_id[rec.tracks.track_id >= 0])
        if len(rec.sample_rows):
            store.add_samples(frame, rec.tracks.with_embedding(rec.sample_rows, rec.sample_embedding),
                              rec.sample_rows, list(rec.crops))
        if rec.finished:
            store.end_tracks(rec.camera_id, rec.finished)
            opened.difference_update(rec.finished)

    def _end_heartbeats(self) -> None:
        """The groups' cameras' last heartbeat: ended (failed for a camera whose reader or group failed)."""
        if self.heartbeat is None:
            return
        self._cam_states = {c: ("failed" if st == "failed" else "ended", err)
                            for c, (st, err) in self._cam_states.items()}
        self.heartbeat.write(self.store, self._cam_states)

    def _wind_up_groups(self, pool: WorkerPool | None, timeout: float = 60.0) -> None:
        """After Ctrl-C / SIGTERM: every group ends its tracks; their last records are written, identities linked."""
        if self.run_id is None or self.store is None or pool is None:
            return
        print("interrupted: ending tracks and linking identities (Ctrl-C again to stop at once)", file=sys.stderr)
        pool.request_stop()
        deadline = time.monotonic() + timeout
        while pool.running and time.monotonic() < deadline:
            for msg in pool.messages(timeout=0.5):
                self._take(msg, pool, None)
        for cam, ids in self._open_ids.items():  # groups that did not answer in time
            self.store.end_tracks(cam, sorted(ids))
        self._end_heartbeats()
        self.store.commit()
        if self.links:
            self.associator.link(self.store)

    def _summary(self, seconds: float, setup: float, interrupted: bool, videos: dict[str, str],
                 reconnects: dict[str, int], video_errors: dict[str, str]) -> RunSummary:
        run_id = -1 if self.run_id is None else self.run_id
        counts = RunCounts()
        if self.store is not None:
            try:
                self.store.commit()
                counts = self.store.reader.run_summary(run_id)
            except Exception:  # noqa: BLE001 - the summary must not hide the original error (close() reports it)
                pass
        ms = self.timer.ms_per_frame()
        ordered = {k: ms.get(k, 0.0) for k in STAGES} | {k: v for k, v in ms.items() if k not in STAGES}
        cpu = time.process_time() - self._cpu0 + self._cpu_children
        return RunSummary(str(self.backend.display), run_id, tuple(c.id for c in self.cfg.cameras), self.timer.frames,
                          seconds, setup, ordered, counts.tracks, counts.samples, counts.identities,
                          counts.cross_camera, interrupted, videos, reconnects, video_errors, self.workers, cpu,
                          dict(self.worker_errors), self.links, self.detector_frames)


def run_pipeline(config: PipelineConfig | str | Path, db_path: str | Path | None = None, device: str = "auto",
                 max_frames: int | None = None, save_video: str | Path | None = None,
                 progress: bool = True, workers: int = 1) -> RunSummary:
    """Run the pipeline over every camera of ``config`` (a PipelineConfig or a cams.yaml path).

    db_path: store file (default: config.store.path). max_frames: stop each camera after this
    many frames. save_video: folder for one annotated MP4 per camera. workers: process groups the
    cameras are split into (1: this process does everything; > 1: a calling script needs the
    ``if __name__ == "__main__":`` guard, as for any multiprocessing spawn). Returns a RunSummary.
    """
    cfg = config if isinstance(config, PipelineConfig) else load_config(config)
    return Runner(cfg, db_path, device, max_frames, save_video, progress, workers=workers).run()
