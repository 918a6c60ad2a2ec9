"""Constant-velocity Kalman filter on boxes as (cx, cy, aspect, h), vectorised over tracks.

State per track (8,): ``cx, cy, a, h, vcx, vcy, va, vh`` with ``a = w / h``; pixels and pixels
per frame. Noise scales with the box height as in SORT/DeepSORT/ByteTrack, so a far (small)
person gets a tighter gate than a near one.
"""
from __future__ import annotations

import numpy as np


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) cx, cy, w / h, h."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = xyxy[:, 2] - xyxy[:, 0]
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-6)
    return np.stack([xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) cx, cy, w / h, h (extra columns ignored) -> (N, 4) x1, y1, x2, y2."""
    xyah = np.asarray(xyah, dtype=np.float64).reshape(len(xyah), -1)
    w = xyah[:, 2] * xyah[:, 3]
    half = np.stack([w / 2, xyah[:, 3] / 2], axis=1)
    return np.concatenate([xyah[:, :2] - half, xyah[:, :2] + half], axis=1)


class KalmanBoxFilter:
    """Batched linear Kalman filter; every method takes and returns arrays for N tracks at once.

    mean: (N, 8) float64, covariance: (N, 8, 8) float64, measurement: (N, 4) xyah.
    """

    def __init__(self, std_position: float = 1.0 / 20, std_velocity: float = 1.0 / 160, dt: float = 1.0) -> None:
        self.std_position = std_position  # fraction of the box height
        self.std_velocity = std_velocity
        self.motion = np.eye(8)
        self.motion[:4, 4:] = dt * np.eye(4)  # x' = x + v dt
        self.observe = np.eye(4, 8)

    def _std(self, h: np.ndarray, pos: float, aspect: float) -> np.ndarray:
        """(N,) heights -> (N, 4) standard deviations for cx, cy, a, h."""
        s = pos * h
        return np.stack([s, s, np.full_like(h, aspect), s], axis=1)

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from (N, 4) xyah boxes: zero velocity, uncertain velocity."""
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        h = z[:, 3]
        std = np.concatenate([self._std(h, 2 * self.std_position, 1e-2),
                              self._std(h, 10 * self.std_velocity, 1e-5)], axis=1)
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step ahead for every track."""
        if len(mean) == 0:
            return mean.copy(), covariance.copy()
        h = mean[:, 3]
        std = np.concatenate([self._std(h, self.std_position, 1e-2),
                              self._std(h, self.std_velocity, 1e-5)], axis=1)
        mean = mean @ self.motion.T
        covariance = self.motion @ covariance @ self.motion.T + _diag(std**2)
        return mean, covariance

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State -> measurement space: (N, 4) mean, (N, 4, 4) innovation covariance."""
        std = self._std(mean[:, 3], self.std_position, 1e-1)
        cov = self.observe @ covariance @ self.observe.T + _diag(std**2)
        return mean[:, :4].copy(), cov

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct N predicted states with N measured xyah boxes (row i with row i)."""
        if len(mean) == 0:
            return mean.copy(), covariance.copy()
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        projected, s = self.project(mean, covariance)
        ph_t = covariance @ self.observe.T  # (N, 8, 4)
        # gain K = P H^T S^-1, solved as S K^T = H P  (S symmetric positive definite)
        gain = np.linalg.solve(s, np.swapaxes(ph_t, 1, 2)).swapaxes(1, 2)  # (N, 8, 4)
        innovation = z - projected
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        covariance = covariance - gain @ s @ np.swapaxes(gain, 1, 2)
        return mean, covariance


    def position_distance(self, mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances of (D, 4) xyah boxes' centres to N tracks' projected centres -> (N, D).

        Compare with a chi-square quantile of 2 degrees of freedom (e.g. 9.21 for 99%)."""
        z = np.asarray(measurement, dtype=np.float64).reshape(-1, 4)
        if len(mean) == 0 or len(z) == 0:
            return np.zeros((len(mean), len(z)))
        projected, s = self.project(mean, covariance)
        d = z[None, :, :2] - projected[:, None, :2]  # (N, D, 2)
        inv = np.linalg.inv(s[:, :2, :2])
        return np.einsum("ndi,nij,ndj->nd", d, inv, d)


def _diag(values: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D, D) diagonal matrices."""
    out = np.zeros(values.shape + values.shape[-1:], dtype=np.float64)
    idx = np.arange(values.shape[-1])
    out[:, idx, idx] = values
    return out
