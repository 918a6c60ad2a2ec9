"""Cheap per-detection appearance for the tracker: HSV colour histograms of the upper and lower body.

A CNN embedding of every detection of every frame would cost more than the detector on CPU; two small
colour histograms per box cost well under a millisecond and are enough to tell apart the few people a
lost track could be confused with near its predicted position (the tracker gates them by motion first).
"""
from __future__ import annotations

import cv2
import numpy as np

from reid_models.common import l2_normalize

BINS = (8, 4, 4)  # hue, saturation, value
FEATURE_DIM = 2 * BINS[0] * BINS[1] * BINS[2]
INNER_WIDTH = 0.6  # the central 60% of the box width: less background beside the body
PARTS = ((0.12, 0.5), (0.5, 0.9))  # upper body (below the head) and legs, as fractions of the height


def hsv_histograms(image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR image and (N, 4) pixel boxes -> (N, 256) float32 L2-normalised features.

    Each box gives two (8, 4, 4)-bin HSV histograms (upper body, legs) of its inner 60% width; each is
    normalised to sum 1 and square-rooted (so the cosine of two features is the Bhattacharyya
    coefficient summed over the parts), then the concatenation is L2-normalised. A box that lies
    outside the image gets a zero vector.
    """
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    out = np.zeros((len(xyxy), FEATURE_DIM), np.float32)
    if len(xyxy) == 0:
        return out
    height, width = image.shape[:2]
    part_dim = FEATURE_DIM // 2
    margin = (1.0 - INNER_WIDTH) / 2
    for k, (x1, y1, x2, y2) in enumerate(xyxy):
        w, h = x2 - x1, y2 - y1
        xa, xb = int(max(0, x1 + margin * w)), int(min(width, x2 - margin * w))
        ya0, yb0 = int(max(0, y1 + PARTS[0][0] * h)), int(min(height, y1 + PARTS[-1][1] * h))
        if xb <= xa or yb0 <= ya0:
            continue
        hsv = cv2.cvtColor(image[ya0:yb0, xa:xb], cv2.COLOR_BGR2HSV)
        for p, (top, bottom) in enumerate(PARTS):
            ya, yb = int(max(0, y1 + top * h)) - ya0, int(min(height, y1 + bottom * h)) - ya0
            if yb <= ya:
                continue
            hist = cv2.calcHist([hsv[ya:yb]], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256])
            out[k, p * part_dim:(p + 1) * part_dim] = np.sqrt(hist.ravel() / max(float(hist.sum()), 1.0))
    return l2_normalize(out, axis=1)
