"""The per-frame stages: detect (YOLO), track (ByteTrack + Kalman, per camera), sampling (which
tracked boxes to embed) and embed (the re-ID network). :func:`pipeline.stages.build.build_stages`
builds them from a config. Stages never touch the store; the runner moves their output there.

Import the submodules directly (``from pipeline.stages.build import build_stages``): this package
imports nothing itself, so light commands do not pay for torch or ultralytics.
"""
