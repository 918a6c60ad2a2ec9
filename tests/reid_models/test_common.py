"""reid_models.common: image reading holds back the native decoders' own stderr lines."""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from reid_models.common import ImageReadError, quiet_native_logs, read_image_bgr
from tests.pipeline.store.test_store import PERSON_BOXES, clip_frames, crop


def test_broken_png_is_one_error_without_libpng_lines(tmp_path, capfd):
    ok, png = cv2.imencode(".png", crop(clip_frames()[0], PERSON_BOXES[0]))
    (tmp_path / "trunc.png").write_bytes(png.tobytes()[: len(png) // 2])
    with pytest.raises(ImageReadError, match="trunc.png: not a decodable image"):
        read_image_bgr(tmp_path / "trunc.png", "query image")
    assert capfd.readouterr().err == ""
    cv2.imdecode(np.frombuffer(png.tobytes()[: len(png) // 2], np.uint8), cv2.IMREAD_COLOR)
    assert "PNG input buffer is incomplete" in capfd.readouterr().err  # what it holds back, unheld


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
