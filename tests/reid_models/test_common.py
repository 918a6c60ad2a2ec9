"""reid_models.common: image reading holds back the native decoders' own stderr lines."""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from reid_models.common import _NATIVE_LOG, ImageReadError, quiet_native_logs, read_image_bgr
from tests.pipeline.store.test_store import PERSON_BOXES, clip_frames, crop


def test_broken_png_is_one_error_without_libpng_lines(tmp_path, capfd):
    ok, png = cv2.imencode(".png", crop(clip_frames()[0], PERSON_BOXES[0]))
    broken = bytearray(png.tobytes())
    broken[40:60] = bytes(20)  # the first chunk after the header zeroed: libpng reports a bad chunk header
    (tmp_path / "broken.png").write_bytes(bytes(broken))
    with pytest.raises(ImageReadError, match="broken.png: not a decodable image"):
        read_image_bgr(tmp_path / "broken.png", "query image")
    assert capfd.readouterr().err == ""
    # what it holds back, unheld: a native decoder line (its wording differs between OpenCV builds: libpng's
    # own "libpng error: ..." or OpenCV's "[ WARN:...] ... PNG input buffer is incomplete"; OpenCV 5.1.0.95
    # says nothing at all about a merely truncated PNG, so the file is damaged inside instead)
    assert cv2.imdecode(np.frombuffer(bytes(broken), np.uint8), cv2.IMREAD_COLOR) is None
    unheld = capfd.readouterr().err.encode().splitlines()
    assert unheld and all(_NATIVE_LOG.match(line) for line in unheld), unheld


def test_quiet_native_logs_passes_on_other_lines_and_nests_across_threads(capfd):
    inner_done = threading.Event()

    def other():
        with quiet_native_logs():
            os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        inner_done.set()

    with quiet_native_logs():
        os.write(2, b"[ WARN:0@1.0] global loadsave.cpp (1) imread_ can't open\n")
        os.write(2, b"a line from another part of the program\n")
        thread = threading.Thread(target=other)
        thread.start()
        assert inner_done.wait(10)
        assert capfd.readouterr().err == ""  # still held: the outer block is open
    thread.join()
    assert capfd.readouterr().err == "a line from another part of the program\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 is back
