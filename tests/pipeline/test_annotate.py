"""pipeline/annotate.py: boxes and ids drawn on real frames, --save-video output."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.annotate import AnnotatedVideoWriter, color_for, draw_tracks, frame_header
from pipeline.store import StoreReader
from pipeline.types import Detections, Frame


def _read(path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok, f"cannot read frame {index} of {path}"
    return image


@pytest.mark.slow
def test_save_video_writes_readable_annotated_mp4s(demo_run, vtest_path):
    videos = demo_run.summary.videos
    assert set(videos) == {"north", "south"}
    cap = cv2.VideoCapture(videos["north"])
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (768, 576)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 10.0) < 0.01
    cap.release()
    # a stored box of north frame 370 is drawn in the video: its outline differs from the raw frame
    with StoreReader(demo_run.db) as store:
        boxes = store.boxes([t.id for t in store.tracks(camera="north")])
    sel = boxes.frame == 370
    assert sel.any()
    x1, y1, x2, y2 = boxes.xyxy[sel][0].astype(int)
    drawn, raw = _read(videos["north"], 370 - 340).astype(int), _read(vtest_path, 370).astype(int)
    diff = np.abs(drawn - raw).sum(axis=2)
    edge = diff[(y1 + y2) // 2, max(x1 - 1, 0):x1 + 2].max()  # left edge of the box at mid height
    inside = np.median(diff[y1 + 5:y2 - 5, x1 + 5:x2 - 5])
    assert edge > 100 and inside < 40


def test_draw_tracks_labels_local_and_global_ids(vtest_path):
    image = _read(vtest_path, 392)
    tracks = Detections.from_arrays([[249, 188, 296, 264], [644, 280, 698, 396], [10, 10, 50, 90]],
                                    [0.9, 0.8, 0.7], track_id=[3, 7, -1])
    plain = draw_tracks(image, tracks)
    assert plain is not image and (image == _read(vtest_path, 392)).all()  # input untouched
    changed = np.abs(plain.astype(int) - image.astype(int)).sum(axis=2) > 0
    assert changed[188:265, 249].any() and changed[280:397, 644].any()
    assert not changed[10:91, 10:51].any()  # untracked rows are not drawn
    labelled = draw_tracks(image, tracks, {3: 12})
    label = np.abs(labelled.astype(int) - plain.astype(int)).sum(axis=2) > 0
    assert label[170:200, 249:320].any()  # "3 G12" instead of "3" (and the global id's colour)
    assert not label[280:397, 640:700].any()  # track 7 has no global id: same drawing
    header = draw_tracks(image, tracks[:0], header="north  #392")
    assert (header[:20, :100] != image[:20, :100]).any()


def test_colors_are_stable_and_distinct():
    assert color_for(5) == color_for(5)
    assert len({color_for(i) for i in range(1, 30)}) >= 25


def test_writer_draws_global_ids_learnt_after_a_frame_was_queued(vtest_path, tmp_path):
    image = _read(vtest_path, 392)
    tracks = Detections.from_arrays([[249, 188, 296, 264]], [0.9], track_id=[3])
    frames = [Frame("cam", 392 + i, 1e9 + i / 10, image) for i in range(3)]
    out = {}
    for name, learn in (("late", True), ("never", False)):
        w = AnnotatedVideoWriter(tmp_path / name, fps={"cam": 10.0}, delay=10)
        for f in frames:
            w.write(f, tracks)
        assert w.frames_written == {}  # held back
        if learn:
            w.update_global_ids({("cam", 3): 42})
        paths = w.close()
        assert w.frames_written == {"cam": 3}
        out[name] = _read(paths["cam"], 1).astype(int)
    region = np.abs(out["late"] - out["never"])[170:200, 249:330].sum(axis=2)
    assert (region > 60).mean() > 0.02
    assert frame_header(frames[0]).startswith("cam  #392  2001-09-09 01:46:40")


def test_boxes_filled_in_later_are_drawn_on_their_held_back_frame(vtest_path, tmp_path):
    """Boxes the tracker fills in for a skipped frame (detector.interval) or a gap arrive with a later frame;
    the writer adds them to the frame they belong to while it is still held back."""
    image = _read(vtest_path, 392)
    box = Detections.from_arrays([[249, 188, 296, 264]], [0.9], track_id=[3])
    w = AnnotatedVideoWriter(tmp_path, fps={"cam": 10.0}, delay=2)
    for i in range(3):
        w.write(Frame("cam", 392 + i, 1e9 + i / 10, image), Detections.empty() if i == 1 else box)
        if i == 2:
            assert w.add_boxes("cam", 393, box)  # frame 393 is still held back
            assert not w.add_boxes("cam", 392, box)  # already written (delay 2)
            assert not w.add_boxes("other", 393, box)
    w.write(Frame("cam", 395, 1e9 + 0.3, image), Detections.empty())
    path = w.close()["cam"]
    drawn, blank = _read(path, 1).astype(int), _read(path, 3).astype(int)
    edge = np.abs(drawn - blank)[200:250, 247:252].sum(axis=2)  # around the box's left edge, x = 249
    assert (edge.max(axis=1) > 60).all()  # drawn on every row of it (frame 3 got no box)


def test_close_finishes_the_files_even_when_flushing_fails(vtest_path, tmp_path, monkeypatch):
    """An error while flushing held-back frames must not leave the videos already written unplayable."""
    writer = AnnotatedVideoWriter(tmp_path, fps={"cam": 10.0}, delay=2)
    empty = Detections.empty()
    for i in range(5):  # 3 frames written, 2 held back
        writer.write(Frame("cam", i, 1e9 + i / 10, _read(vtest_path, i)), empty)
    assert writer.frames_written == {"cam": 3}

    def broken(pending):
        raise RuntimeError("disk full")
    monkeypatch.setattr(writer, "_emit_pending", broken)
    try:
        writer.close()
    except RuntimeError:
        pass
    else:
        raise AssertionError("close() should re-raise the flush error")
    cap = cv2.VideoCapture(str(tmp_path / "cam.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 3
