"""Detections / Frame: parallel columns stay aligned through selection and replacement."""
import dataclasses

import numpy as np
import pytest

from pipeline.types import Detections, Frame


def _dets():
    xyxy = np.array([[0, 0, 10, 20], [5, 5, 15, 45], [100, 50, 130, 110]], np.float64)
    emb = np.eye(3, 4, dtype=np.float32)
    return Detections(xyxy, [0.9, 0.4, 0.7], [0, 1, 0], [3, -1, 7], emb)


def test_columns_are_cast_and_aligned():
    d = _dets()
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (3, 4)
    assert d.confidence.dtype == np.float32 and d.class_id.dtype == np.int64
    assert d.track_id.tolist() == [3, -1, 7]
    assert len(d) == 3
    np.testing.assert_allclose(d.area, [200, 400, 1800])


def test_boolean_and_index_selection_keep_rows_together():
    d = _dets()
    tracked = d[d.track_id >= 0]
    assert tracked.track_id.tolist() == [3, 7]
    np.testing.assert_array_equal(tracked.xyxy[1], [100, 50, 130, 110])
    np.testing.assert_array_equal(tracked.embedding[1], [0, 0, 1, 0])
    one = d[1]
    assert len(one) == 1 and one.confidence[0] == pytest.approx(0.4)


def test_with_replaces_a_column_without_touching_the_original():
    d = _dets()
    e = d.with_(track_id=np.array([1, 2, 3]))
    assert e.track_id.tolist() == [1, 2, 3] and d.track_id.tolist() == [3, -1, 7]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.track_id = np.zeros(3)  # frozen


def test_embedding_row_count_must_match():
    with pytest.raises(ValueError, match="embedding must be"):
        Detections(np.zeros((2, 4)), [1, 1], [0, 0], [1, 2], np.zeros((3, 8)))


def test_empty_and_from_arrays_defaults():
    e = Detections.empty(embedding_dim=16)
    assert len(e) == 0 and e.embedding.shape == (0, 16) and e.xyxy.shape == (0, 4)
    d = Detections.from_arrays([[1, 2, 3, 4]], [0.5])
    assert d.track_id.tolist() == [-1] and d.class_id.tolist() == [0]


def test_frame_shape():
    f = Frame("cam1", 4, 1.5, np.zeros((576, 768, 3), np.uint8))
    assert f.shape == (576, 768)


def test_with_embedding_fills_the_chosen_rows_and_zeros_the_rest():
    d = _dets()
    emb = np.array([[1, 0], [0, 1]], np.float32)
    out = d.with_embedding([2, 0], emb)
    assert out.embedding.tolist() == [[0, 1], [0, 0], [1, 0]] and d.embedding.shape == (3, 4)
    assert out.track_id.tolist() == d.track_id.tolist()
    with pytest.raises(ValueError, match="K=1"):
        d.with_embedding([0], emb)


def test_from_ultralytics_keeps_person_classes_of_a_real_results_object():
    torch = pytest.importorskip("torch")
    results = pytest.importorskip("ultralytics.engine.results")
    image = np.zeros((64, 80, 3), np.uint8)
    boxes = torch.tensor([[1, 2, 11, 22, 0.9, 0], [5, 5, 15, 45, 0.4, 2], [30, 10, 50, 60, 0.7, 1]])
    res = results.Results(image, path="x.jpg", names={0: "person", 1: "fall", 2: "dog"}, boxes=boxes)
    dets = Detections.from_ultralytics(res, person_classes=(0, 1))
    assert dets.xyxy.tolist() == [[1, 2, 11, 22], [30, 10, 50, 60]] and dets.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(dets.confidence, [0.9, 0.7])
    assert (dets.track_id == -1).all()
    empty = results.Results(image, path="x.jpg", names={0: "person"}, boxes=torch.zeros((0, 6)))
    assert len(Detections.from_ultralytics(empty, (0,))) == 0


def test_concatenate_stacks_rows_and_keeps_embeddings_only_when_all_have_them():
    a = Detections.from_arrays([[0, 0, 10, 20]], [0.9], track_id=[3], embedding=np.ones((1, 2)))
    b = Detections.from_arrays([[5, 5, 15, 25], [1, 1, 2, 2]], [0.5, 0.4], class_id=[1, 1], track_id=[4, 5],
                               embedding=np.zeros((2, 2)))
    both = Detections.concatenate([a, b])
    assert len(both) == 3 and both.track_id.tolist() == [3, 4, 5] and both.class_id.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(both.xyxy[1], [5, 5, 15, 25])
    assert both.embedding.shape == (3, 2) and both.embedding[0].tolist() == [1, 1]
    assert Detections.concatenate([a, Detections.empty()]).embedding is None  # one part without: no column
    assert len(Detections.concatenate([])) == 0
