"""A tiny MJPEG-over-HTTP camera on 127.0.0.1 that fails on purpose (test helper).

Serves JPEG frames as ``multipart/x-mixed-replace`` (what IP cameras' ``/video.mjpg`` send),
cycling over the given frames at ``fps``. To test reconnection it can:

- drop the first ``drops`` connections after ``drop_after`` frames each (the socket is closed
  mid-stream, like a camera rebooting), or with ``stall=True`` go silent on them instead
  (the socket stays open but no more bytes come, like a frozen camera or a black-holed link),
- refuse connections for ``refuse_seconds`` after each drop, not stall (the listening socket is closed,
  so a client gets "connection refused"), then listen again on the same port.

Only loopback, only daemon threads, and every loop is bounded by ``max_seconds`` so nothing
outlives a test run even if ``stop()`` is never called.

    with MJPEGServer(jpegs, fps=20, drop_after=15, refuse_seconds=0.5) as server:
        url = server.url          # "http://127.0.0.1:PORT/video.mjpg"
        ...
        server.frames_sent, server.connections, server.drops_done
"""
from __future__ import annotations

import socket
import threading
import time

BOUNDARY = b"frame"


class MJPEGServer:
    """An HTTP MJPEG stream of ``jpegs`` (list of JPEG bytes) on 127.0.0.1."""

    def __init__(self, jpegs: list[bytes], fps: float = 20.0, drop_after: int | None = None,
                 drops: int = 1, stall: bool = False, refuse_seconds: float = 0.0, port: int = 0,
                 max_seconds: float = 60.0) -> None:
        if not jpegs:
            raise ValueError("MJPEGServer needs at least one JPEG frame")
        self.jpegs = list(jpegs)
        self.fps = float(fps)
        self.drop_after = drop_after
        self.drops = drops
        self.stall = stall
        self.refuse_seconds = refuse_seconds
        self.max_seconds = max_seconds
        self.port = port
        self.connections = 0      # connections accepted so far
        self.frames_sent = 0      # JPEG parts fully written, all connections together
        self.drops_done = 0       # connections dropped (or stalled) on purpose mid-stream
        self._drops_planned = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._deadline = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> MJPEGServer:
        self._deadline = time.monotonic() + self.max_seconds
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="mjpeg-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close_listener()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> MJPEGServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(8)
        sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._listening.set()

    def _close_listener(self) -> None:
        self._listening.clear()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _accept_loop(self) -> None:
        while self._running():
            if not self._listening.is_set():
                time.sleep(0.02)
                continue
            sock = self._sock
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError, AttributeError):
                continue
            with self._lock:
                self.connections += 1
                drop_this = self.drop_after is not None and self._drops_planned < self.drops
                self._drops_planned += drop_this
            threading.Thread(target=self._serve, args=(conn, drop_this), daemon=True,
                             name="mjpeg-client").start()
        self._close_listener()

    def _serve(self, conn: socket.socket, drop_this: bool) -> None:
        sent_here = 0
        try:
            conn.settimeout(2.0)
            self._read_request(conn)
            conn.sendall(b"HTTP/1.0 200 OK\r\n"
                         b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n"
                         b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
            period = 1.0 / self.fps
            next_t = time.monotonic()
            while self._running():
                if drop_this and sent_here >= self.drop_after:
                    self._drop(conn)
                    return
                jpeg = self.jpegs[self.frames_sent % len(self.jpegs)]
                conn.sendall(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                             + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                sent_here += 1
                with self._lock:
                    self.frames_sent += 1
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
        except OSError:
            pass  # the client went away
        finally:
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def _drop(self, conn: socket.socket) -> None:
        """Cut (or stall) the connection mid-stream, then refuse new ones for a while."""
        if self.stall:
            with self._lock:
                self.drops_done += 1
            while self._running():
                time.sleep(0.02)
            return
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        with self._lock:
            self.drops_done += 1
        if self.refuse_seconds > 0:
            self._close_listener()
            end = time.monotonic() + self.refuse_seconds
            while self._running() and time.monotonic() < end:
                time.sleep(0.02)
            if self._running():
                self._listen()
