"""Many cameras per machine: ``run --workers N`` splits the cameras into N process groups.

Each group is a child process (multiprocessing *spawn*) that reads, detects, tracks, samples and
embeds its own cameras with its own models on its device, batching frames across its cameras, as the
single-process run loop does. It never opens the store: it sends typed record batches over its own
pipe (a bounded outbox of ``queue_size`` messages fed by a thread) to the parent, which holds the
store's writer lock and its only writer, commits every ``store.commit_interval`` seconds and links
identities over all groups (see :mod:`pipeline.runner`). One pipe per group, not one shared queue:
a group killed in the middle of a message (``kill -9``, the OOM killer) leaves a half-written message
and, with a shared queue, its write lock held, which would stop every other group; with its own
pipe only its channel ends (the parent reads end-of-file and reports the group as failed).
Local track ids are per camera (each tracker owns its counter) and store rows are keyed by
(run, camera, local id), so groups never clash.

    pool = WorkerPool(cfg, split_cameras(cfg.cameras, 2), device="cpu")
    ready = pool.start()            # GroupReady per group; a group's start-up error is raised here
    pool.go()
    while pool.running:
        for msg in pool.messages(timeout=0.5):   # GroupStep | CamerasEnded | GroupDone | GroupFailed
            ...
    pool.close()

Children ignore SIGINT (the parent decides: :meth:`WorkerPool.request_stop` makes every group end
its tracks and report them); they die with the parent (Linux ``PR_SET_PDEATHSIG``, and a parent-pid
check while they wait), so ``kill -9`` of the parent leaves no orphan. A child that dies or raises is
reported as a :class:`GroupFailed`. As with any multiprocessing *spawn*, a script that starts a run with
``workers > 1`` needs the ``if __name__ == "__main__":`` guard (the children import the main module).
Torch's intra-op threads are split between the groups (``max(1, cores // N)`` each) so that the groups
do not fight over the cores.
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from pipeline.config import AssociationConfig, CameraConfig, PipelineConfig
from pipeline.ingest import MultiCameraReader, camera_state
from pipeline.stages.build import Stages, build_stages
from pipeline.stages.step import FrameRecord, FrameStepper

GROUP_STAGES = ("read", "detect", "track", "embed", "send")
"""Stages a group times (seconds summed per stage; ``send``: waiting for room in the queue)."""


# ------------------------------------------------------------------ messages (child -> parent)
@dataclass(frozen=True)
class GroupReady:
    """A group loaded its models and opened its cameras; metas: camera id -> reader meta."""

    group: int
    embedder_id: str
    embedding_dim: int
    embedder_spec: dict
    metas: dict[str, dict]


@dataclass(frozen=True)
class GroupStep:
    """The records of one loop step of a group (at most one frame per camera). late: the records of
    FrameStepper.close, for frames already counted (their boxes come at the end of the stream)."""

    group: int
    records: tuple[FrameRecord, ...]
    late: bool = False


@dataclass(frozen=True)
class CameraState:
    """A camera's reader state for its ``camera_status`` heartbeat: state as ``Runner.camera_state`` gives it
    ('live', 'reconnecting', 'ended', 'failed') and the reader's last error (None: none)."""

    camera_id: str
    state: str
    last_error: str | None


@dataclass(frozen=True)
class CameraStates:
    """A group's cameras' states, sent about once per store commit interval (also while no frame comes)."""

    group: int
    states: tuple[CameraState, ...]


@dataclass(frozen=True)
class CamerasEnded:
    """Cameras of a group that ended (or reached max_frames, or were stopped): camera -> local ids it finished."""

    group: int
    finished: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class GroupDone:
    """A group ended normally. frames: frames it processed; seconds: stage -> wall seconds (GROUP_STAGES);
    cpu_seconds: CPU time of the process during its loop; stats: camera -> (is_live, reconnects, last_error)."""

    group: int
    frames: int
    seconds: dict[str, float]
    cpu_seconds: float
    stats: dict[str, tuple[bool, int, str | None]]


@dataclass(frozen=True)
class GroupFailed:
    """A group stopped by an error (``error``, picklable) or died (``error`` a RuntimeError saying how)."""

    group: int
    error: BaseException
    started: bool  # False: it failed while loading its models or opening its cameras


class GroupDied(RuntimeError):
    """A group's process ended without a word (killed, crashed in native code); the message says how."""


Message = GroupReady | GroupStep | CameraStates | CamerasEnded | GroupDone | GroupFailed


# ------------------------------------------------------------------ splitting
def split_cameras(cameras: Sequence[CameraConfig], workers: int) -> list[tuple[CameraConfig, ...]]:
    """``workers`` groups of consecutive cameras whose sizes differ by at most one (1 <= workers <= cameras)."""
    if not 1 <= workers <= len(cameras):
        raise ValueError(f"workers must be between 1 and the {len(cameras)} camera(s), got {workers}")
    size, extra = divmod(len(cameras), workers)
    groups, start = [], 0
    for k in range(workers):
        end = start + size + (k < extra)
        groups.append(tuple(cameras[start:end]))
        start = end
    return groups


def threads_per_group(workers: int) -> int:
    """Torch intra-op threads for each of ``workers`` groups: the cores this process may use, shared out."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def describe_group(index: int, cameras: Sequence[CameraConfig]) -> str:
    return f"worker group {index + 1} (camera{'s' if len(cameras) > 1 else ''} {', '.join(c.id for c in cameras)})"


# ------------------------------------------------------------------ the work of one group
class CameraGroup:
    """ingest -> detect -> track -> sample + embed for a group's cameras, producing records, never writing.

    Its steps are the single-process run loop's (:class:`~pipeline.stages.step.FrameStepper`); the parent
    writes what they give.
    """

    def __init__(self, index: int, stages: Stages, reader: MultiCameraReader, max_frames: int | None,
                 status_every: float = 1.0) -> None:
        self.index, self.stages, self.reader, self.max_frames = index, stages, reader, max_frames
        self.status_every = float(status_every)  # seconds between CameraStates messages
        self.stepper = FrameStepper(stages, {cam_id: float(r.meta.get("fps") or 10.0) / r.camera.stride
                                             for cam_id, r in reader.readers.items()})
        self.seconds: dict[str, float] = defaultdict(float)
        self.frames = 0
        self.done: set[str] = set()

    def _add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - t0
        return now

    def run(self, send: Callable[[Message], None], stopping: Callable[[], bool]) -> None:
        """Loop until every camera ended (or reached max_frames) or ``stopping()``; then finish every track."""
        reader, counts = self.reader, defaultdict(int)
        t0 = time.perf_counter()
        last_states = -math.inf
        while not reader.finished and not stopping():
            batch = reader.next_batch(timeout=0.5)
            if self.max_frames is not None:
                batch = [f for f in batch if counts[f.camera_id] < self.max_frames]
            for f in batch:
                counts[f.camera_id] += 1
            t0 = self._add("read", t0)
            if batch:
                records = self.stepper.step(batch, self._add)
                self.frames += len(batch)
                t0 = time.perf_counter()
                send(GroupStep(self.index, records))
                t0 = self._add("send", t0)
            ended = [c for c, r in reader.readers.items() if c not in self.done
                     and (r.ended or (self.max_frames is not None and counts[c] >= self.max_frames))]
            if ended:
                self.finish(ended, send)
                t0 = time.perf_counter()
            if time.monotonic() - last_states >= self.status_every:
                send(self.states())
                last_states = time.monotonic()
            if self.max_frames is not None and len(self.done) == len(reader.readers):
                break
        rest = [c for c in self.stepper.trackers if c not in self.done]
        if rest:
            self.finish(rest, send, close=not stopping())

    def states(self) -> CameraStates:
        """Every camera's state now (ended: its last frame was taken)."""
        return CameraStates(self.index, tuple(CameraState(c, camera_state(s.state, c in self.done), s.last_error)
                                              for c, s in self.reader.stats.items()))

    def finish(self, cameras: list[str], send: Callable[[Message], None], close: bool = True) -> None:
        """End the tracks of ``cameras`` (after, with ``close``, giving their last skipped frames boxes)."""
        if close:
            last = self.stepper.close(cameras, self._add)
            if last:
                send(GroupStep(self.index, last, late=True))
        finished = self.stepper.finish(cameras)
        self.done.update(cameras)
        send(CamerasEnded(self.index, finished))


# ------------------------------------------------------------------ the child process
@dataclass(frozen=True)
class GroupSpec:
    """What a child needs: its index, the config with only its cameras, device, max_frames, torch threads,
    and how many messages its outbox holds."""

    index: int
    config: PipelineConfig
    device: str
    max_frames: int | None
    threads: int
    parent_pid: int
    queue_size: int = 4


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the parent dies (a parent-pid check covers the rest)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any exception must reach the parent as something
        from reid_models.common import one_line

        return RuntimeError(f"{type(error).__name__}: {one_line(error)}")


class Outbox:
    """A group's sending end: ``send`` pickles a message (errors surface in the caller) and waits for room
    among ``size`` queued messages; one thread writes them to the pipe, so the group keeps working while the
    parent commits. The process exits (code 1) when the parent is gone or the pipe is broken."""

    def __init__(self, conn: Connection, size: int, parent_pid: int) -> None:
        self.conn, self.parent_pid = conn, parent_pid
        self._pending: queue.Queue[bytes | None] = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._write, name="camreid-outbox", daemon=True)
        self._thread.start()

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent_pid

    def _put(self, item: bytes | None) -> None:
        while True:
            try:
                self._pending.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.parent_gone() or not self._thread.is_alive():
                    os._exit(1)

    def send(self, msg: Message) -> None:
        self._put(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def _write(self) -> None:
        while (data := self._pending.get()) is not None:
            try:
                self.conn.send_bytes(data)
            except OSError:  # the parent closed its end or died
                os._exit(1)

    def close(self) -> None:
        """Write everything queued, then close the pipe (the parent reads end-of-file after the last message)."""
        self._put(None)
        self._thread.join()
        self.conn.close()


def group_main(spec: GroupSpec, conn: Connection, go, stop) -> None:
    """Entry point of a group's process: open cameras, build models, say ready, wait for go, loop, say done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _die_with_parent(spec.parent_pid)
    outbox = Outbox(conn, spec.queue_size, spec.parent_pid)
    send, parent_gone = outbox.send, outbox.parent_gone

    started = False
    reader = None
    try:
        import cv2
        import torch

        torch.set_num_threads(spec.threads)
        cv2.setNumThreads(spec.threads)
        reader = MultiCameraReader(spec.config.cameras).start()
        stages = build_stages(spec.config, spec.device)
        metas = {c.id: reader.readers[c.id].meta for c in spec.config.cameras}
        shapes = {(m.get("height"), m.get("width")) for m in metas.values()}
        shape = next(iter(shapes)) if len(shapes) == 1 and None not in next(iter(shapes)) else None
        stages.warmup(shape, batch=len(metas))
        emb = stages.embedder
        send(GroupReady(spec.index, emb.embedder_id, emb.dim, emb.spec, metas))
        while not go.wait(0.5):
            if parent_gone() or stop.is_set():
                os._exit(1)
        started = True
        group = CameraGroup(spec.index, stages, reader, spec.max_frames, spec.config.store.commit_interval)
        cpu0 = time.process_time()
        group.run(send, stop.is_set)
        reader.stop()
        stats = {c: (r.camera.is_live, r.stats.reconnects, r.stats.last_error) for c, r in reader.readers.items()}
        send(GroupDone(spec.index, group.frames, dict(group.seconds), time.process_time() - cpu0, stats))
        outbox.close()
    except BaseException as e:  # noqa: BLE001 - every failure is reported to the parent, in one message
        if reader is not None:
            reader.stop()
        send(GroupFailed(spec.index, _picklable(e), started))
        outbox.close()
        os._exit(1)


# ------------------------------------------------------------------ the parent's side
@dataclass
class WorkerPool:
    """The group processes of a run (see module docstring). ``groups``: cameras of each group."""

    config: PipelineConfig
    groups: list[tuple[CameraConfig, ...]]
    device: str = "auto"
    max_frames: int | None = None
    queue_size: int = 4  # messages a group may have sent and the parent not yet read (besides the pipe's buffer)
    _procs: list = field(default_factory=list, init=False)
    _running: set[int] = field(default_factory=set, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        ctx = multiprocessing.get_context("spawn")
        self._go, self._stop = ctx.Event(), ctx.Event()
        self._channels: dict[int, Connection] = {}  # group -> the parent's reading end, while open
        self._child_ends: list[Connection] = []
        threads = threads_per_group(len(self.groups))
        for k, cams in enumerate(self.groups):
            cfg = dataclasses.replace(self.config, cameras=cams, association=AssociationConfig())
            spec = GroupSpec(k, cfg, self.device, self.max_frames, threads, os.getpid(), self.queue_size)
            reading, writing = ctx.Pipe(duplex=False)
            self._channels[k] = reading
            self._child_ends.append(writing)
            self._procs.append(ctx.Process(target=group_main, args=(spec, writing, self._go, self._stop),
                                           name=f"camreid-group-{k + 1}", daemon=True))

    @property
    def running(self) -> set[int]:
        """Groups that neither ended nor failed."""
        return set(self._running)

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self._procs]

    def describe(self, group: int) -> str:
        return describe_group(group, self.groups[group])

    def start(self) -> list[GroupReady]:
        """Start every group and wait until each has its models and cameras; a group that fails meanwhile
        stops all of them and its error is raised (the same exception a single-process run raises)."""
        for p, writing in zip(self._procs, self._child_ends):
            p.start()
            writing.close()  # the child holds it now: its death is end-of-file here
        self._child_ends.clear()
        self._running = set(range(len(self._procs)))
        ready: dict[int, GroupReady] = {}
        try:
            while len(ready) < len(self._procs):
                for msg in self.messages(timeout=0.5):
                    if isinstance(msg, GroupFailed):
                        raise msg.error
                    if isinstance(msg, GroupReady):
                        ready[msg.group] = msg
        except BaseException:
            self.close()
            raise
        return [ready[k] for k in range(len(self._procs))]

    def go(self) -> None:
        """Let every group start its frame loop (after the store has started the run)."""
        self._go.set()

    def request_stop(self) -> None:
        """Ask every group to end its tracks, report them and stop (they answer CamerasEnded, GroupDone)."""
        self._stop.set()

    def _drain(self, timeout: float, limit: int = 64, groups: Sequence[int] | None = None) -> list[Message]:
        """Up to ``limit`` messages from each open channel (of ``groups``; all: None) that has any, waiting
        up to ``timeout`` s for the first. A channel at end-of-file (its process ended) is closed."""
        channels = {k: c for k, c in self._channels.items() if groups is None or k in groups}
        if not channels:
            time.sleep(timeout)
            return []
        out: list[Message] = []
        for conn in wait(list(channels.values()), timeout):
            k = next(g for g, c in channels.items() if c is conn)
            try:
                for _ in range(limit):
                    if not conn.poll():
                        break
                    out.append(pickle.loads(conn.recv_bytes()))
            except (EOFError, OSError):  # ended, possibly in the middle of a message (killed while writing)
                self._channels.pop(k).close()
        for msg in out:
            if isinstance(msg, (GroupDone, GroupFailed)):
                self._running.discard(msg.group)
        return out

    def messages(self, timeout: float = 0.5) -> list[Message]:
        """Messages that arrived (waits up to ``timeout`` s for the first), plus a GroupFailed for each group
        whose process died without saying why (killed, crashed in native code)."""
        out = self._drain(timeout)
        for k in sorted(self._running):
            proc = self._procs[k]
            if proc.exitcode is None and k in self._channels:
                continue
            deadline = time.monotonic() + 5.0
            while k in self._channels and k in self._running and time.monotonic() < deadline:
                out += self._drain(0.1, limit=10_000, groups=[k])  # everything it wrote before it ended
            if k in self._running:
                if k in self._channels:  # still open after 5 s (a descendant holds its end): stop reading it
                    self._channels.pop(k).close()
                proc.join(5.0)  # its pipe ended: the process is ending
                code = proc.exitcode
                if code is None:
                    how = "closed its pipe without a word"
                else:
                    how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
                           else f"exited with code {code}")
                if not self._go.is_set():  # e.g. a script without the __main__ guard, re-run by spawn
                    how += (" while starting (see its traceback above; a script that starts a run with workers > 1 "
                            "needs the `if __name__ == \"__main__\":` guard of multiprocessing's spawn)")
                out.append(GroupFailed(k, GroupDied(f"its process {how}"), self._go.is_set()))
                self._running.discard(k)
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Stop every group: ask, wait up to ``timeout`` s (discarding what they still send), then terminate.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        deadline = time.monotonic() + timeout
        alive = [p for p in self._procs if p.pid is not None]
        while alive and time.monotonic() < deadline:
            self._drain(0.05, limit=10_000)
            alive = [p for p in alive if p.exitcode is None]
        for p in alive:
            p.terminate()
        for p in alive:
            p.join(2.0)
            if p.exitcode is None:
                p.kill()
                p.join(2.0)
        self._running.clear()
        for conn in [*self._channels.values(), *self._child_ends]:
            conn.close()
        self._channels.clear()
        self._child_ends.clear()
