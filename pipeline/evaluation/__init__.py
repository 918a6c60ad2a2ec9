"""Scoring tracks against ground truth: MOTChallenge files, TrackEval metrics, identity-error plots.

Pure glue over the PyPI ``trackeval`` package (HOTA, CLEAR MOT, identity metrics); imports nothing
else from the pipeline.
"""
from pipeline.evaluation.mot import MotBoxes, MotFormatError, camera_ground_truth, read_mot
from pipeline.evaluation.plot import frame_matches, plot_cameras, plot_identity_errors
from pipeline.evaluation.score import concatenate_cameras, score_camera, score_global, trackeval_data

__all__ = ["MotBoxes", "MotFormatError", "camera_ground_truth", "concatenate_cameras", "frame_matches",
           "plot_cameras", "plot_identity_errors", "read_mot", "score_camera", "score_global", "trackeval_data"]
