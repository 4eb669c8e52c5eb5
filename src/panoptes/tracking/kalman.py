"""A constant-velocity Kalman filter over many boxes at once.

The state of one box is ``(cx, cy, aspect, h, vcx, vcy, vaspect, vh)``: centre in pixels, aspect
ratio ``w / h``, height in pixels, and their velocities per frame. It is the filter of DeepSORT
and ByteTrack, whose process and measurement noise grow with the box height, so that one set of
constants suits small and large objects alike. Every method works on all the boxes of a stream
together (means [N, 8], covariances [N, 8, 8]): with a hundred objects per frame, one batched
solve costs less than a hundred small ones in a Python loop.

The arithmetic is float64 throughout; boxes come in and go out as float32 or float64 xyxy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["KalmanBoxFilter", "xyah_to_xyxy", "xyxy_to_xyah"]

FloatArray = npt.NDArray[np.float64]

STATE_DIM = 8
MEASUREMENT_DIM = 4

# Noise scales relative to the box height, as in DeepSORT and ByteTrack.
POSITION_NOISE_PER_HEIGHT = 1.0 / 20
VELOCITY_NOISE_PER_HEIGHT = 1.0 / 160
# The aspect ratio has no pixel scale: fixed standard deviations.
ASPECT_NOISE = 1e-2
ASPECT_VELOCITY_NOISE = 1e-5
# The noise scale never falls below one pixel of height, so that a box that shrinks to nothing
# under prediction cannot make the innovation covariance singular.
MIN_NOISE_HEIGHT = 1.0


def xyxy_to_xyah(xyxy: npt.ArrayLike) -> FloatArray:
    """Corner boxes [N, 4] (x1, y1, x2, y2) to float64 [N, 4] (cx, cy, w / h, h).

    A box of zero height gets an infinite or NaN aspect; callers filter such boxes out first.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = w / h
    return np.stack(
        [boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, aspect, h],
        axis=1,
    )


def xyah_to_xyxy(xyah: npt.ArrayLike) -> FloatArray:
    """(cx, cy, w / h, h) boxes [N, 4] (extra state columns ignored) to float64 corners [N, 4]."""
    state = np.asarray(xyah, dtype=np.float64)
    h = state[:, 3]
    w = state[:, 2] * h
    cx, cy = state[:, 0], state[:, 1]
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)


class KalmanBoxFilter:
    """Predicts and corrects many (cx, cy, aspect, h) boxes with constant velocity per frame.

    Stateless: the caller keeps ``mean`` float64 [N, 8] and ``covariance`` float64 [N, 8, 8] and
    passes them in; every method returns new arrays.
    """

    def __init__(
        self,
        position_noise_per_height: float = POSITION_NOISE_PER_HEIGHT,
        velocity_noise_per_height: float = VELOCITY_NOISE_PER_HEIGHT,
    ) -> None:
        self.position_noise_per_height = position_noise_per_height
        self.velocity_noise_per_height = velocity_noise_per_height
        # x' = x + v for one frame.
        self._transition = np.eye(STATE_DIM)
        self._transition[:MEASUREMENT_DIM, MEASUREMENT_DIM:] = np.eye(MEASUREMENT_DIM)

    def initiate(self, xyah: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """New tracks from first measurements [N, 4]: mean [N, 8] at rest, covariance [N, 8, 8].

        The velocity is unknown, hence its large variance: the second measurement sets it.
        """
        measurement = np.asarray(xyah, dtype=np.float64).reshape(-1, MEASUREMENT_DIM)
        n = len(measurement)
        mean = np.concatenate([measurement, np.zeros((n, MEASUREMENT_DIM))], axis=1)
        h = self._noise_height(measurement[:, 3])
        pos, vel = self.position_noise_per_height, self.velocity_noise_per_height
        std = np.stack(
            [
                2 * pos * h,
                2 * pos * h,
                np.full(n, ASPECT_NOISE),
                2 * pos * h,
                10 * vel * h,
                10 * vel * h,
                np.full(n, ASPECT_VELOCITY_NOISE),
                10 * vel * h,
            ],
            axis=1,
        )
        covariance = np.zeros((n, STATE_DIM, STATE_DIM))
        diagonal = np.arange(STATE_DIM)
        covariance[:, diagonal, diagonal] = std**2
        return mean, covariance

    def predict(self, mean: FloatArray, covariance: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Advance every box one frame: mean [N, 8], covariance [N, 8, 8] -> the same shapes."""
        n = len(mean)
        h = self._noise_height(mean[:, 3])
        pos, vel = self.position_noise_per_height, self.velocity_noise_per_height
        std = np.stack(
            [
                pos * h,
                pos * h,
                np.full(n, ASPECT_NOISE),
                pos * h,
                vel * h,
                vel * h,
                np.full(n, ASPECT_VELOCITY_NOISE),
                vel * h,
            ],
            axis=1,
        )
        transition = self._transition
        new_mean = mean @ transition.T
        new_covariance = transition @ covariance @ transition.T
        diagonal = np.arange(STATE_DIM)
        new_covariance[:, diagonal, diagonal] += std**2
        return new_mean, new_covariance

    def update(
        self, mean: FloatArray, covariance: FloatArray, xyah: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """Correct N boxes with their measurements [N, 4]; returns mean [N, 8], cov [N, 8, 8]."""
        measurement = np.asarray(xyah, dtype=np.float64).reshape(-1, MEASUREMENT_DIM)
        if len(measurement) == 0:
            return mean.copy(), covariance.copy()
        h = self._noise_height(mean[:, 3])
        pos = self.position_noise_per_height
        measurement_var = np.stack(
            [pos * h, pos * h, np.full(len(h), 1e-1), pos * h],
            axis=1,
        )
        measurement_var **= 2
        # The measurement picks the first four state components (H = [I 0]), so H P H^T and
        # P H^T are slices of P rather than products.
        innovation_cov = covariance[:, :MEASUREMENT_DIM, :MEASUREMENT_DIM].copy()
        diagonal = np.arange(MEASUREMENT_DIM)
        innovation_cov[:, diagonal, diagonal] += measurement_var
        # K = P H^T S^-1, and as P and S are symmetric, K^T = S^-1 (H P): one batched solve.
        gain = np.linalg.solve(innovation_cov, covariance[:, :MEASUREMENT_DIM, :]).transpose(
            0, 2, 1
        )
        innovation = measurement - mean[:, :MEASUREMENT_DIM]
        new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        new_covariance = covariance - gain @ covariance[:, :MEASUREMENT_DIM, :]
        # Rounding leaves the product slightly asymmetric; left alone it grows frame after frame.
        new_covariance = 0.5 * (new_covariance + new_covariance.transpose(0, 2, 1))
        return new_mean, new_covariance

    @staticmethod
    def _noise_height(h: FloatArray) -> FloatArray:
        return np.maximum(np.abs(h), MIN_NOISE_HEIGHT)
