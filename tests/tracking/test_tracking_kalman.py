"""The batched constant-velocity Kalman filter."""

from __future__ import annotations

import numpy as np

from panoptes.tracking.kalman import KalmanBoxFilter, xyah_to_xyxy, xyxy_to_xyah


def test_box_conversions_round_trip() -> None:
    xyxy = np.array([[10, 20, 50, 100], [0, 0, 1, 2]], np.float32)
    xyah = xyxy_to_xyah(xyxy)
    np.testing.assert_allclose(xyah, np.array([[30, 60, 0.5, 80], [0.5, 1, 0.5, 2]]))
    np.testing.assert_allclose(xyah_to_xyxy(xyah), xyxy)


VELOCITY = np.array([[3, -2, 0, 0], [-1, 0.5, 0, 0.2], [0, 4, 0, 0]], float)


def moving_boxes(frame: int) -> np.ndarray:
    """Three boxes (cx, cy, aspect, h) moving at constant velocity [3, 4]."""
    start = np.array([[100, 100, 0.5, 80], [400, 300, 1.0, 40], [50, 500, 0.4, 120]], float)
    boxes: np.ndarray = start + VELOCITY * frame
    return boxes


def test_the_filter_learns_constant_velocities() -> None:
    kalman = KalmanBoxFilter()
    mean, covariance = kalman.initiate(moving_boxes(0))
    assert mean.shape == (3, 8) and covariance.shape == (3, 8, 8)
    for frame in range(1, 40):
        mean, covariance = kalman.predict(mean, covariance)
        mean, covariance = kalman.update(mean, covariance, moving_boxes(frame))
    np.testing.assert_allclose(mean[:, 4:], VELOCITY, atol=0.05)
    predicted, _ = kalman.predict(mean, covariance)
    np.testing.assert_allclose(predicted[:, :4], moving_boxes(40), atol=0.2)
    # Covariances stay symmetric and positive definite.
    np.testing.assert_allclose(covariance, covariance.transpose(0, 2, 1))
    assert np.all(np.linalg.eigvalsh(covariance) > 0)


def test_a_batch_equals_one_box_at_a_time() -> None:
    kalman = KalmanBoxFilter()
    batch = kalman.initiate(moving_boxes(0))
    single = [kalman.initiate(moving_boxes(0)[i : i + 1]) for i in range(3)]
    for frame in range(1, 6):
        batch = kalman.update(*kalman.predict(*batch), moving_boxes(frame))
        single = [
            kalman.update(*kalman.predict(*state), moving_boxes(frame)[i : i + 1])
            for i, state in enumerate(single)
        ]
    np.testing.assert_allclose(batch[0], np.concatenate([s[0] for s in single]))
    np.testing.assert_allclose(batch[1], np.concatenate([s[1] for s in single]))


def test_empty_batches() -> None:
    kalman = KalmanBoxFilter()
    mean, covariance = kalman.initiate(np.zeros((0, 4)))
    mean, covariance = kalman.predict(mean, covariance)
    mean, covariance = kalman.update(mean, covariance, np.zeros((0, 4)))
    assert mean.shape == (0, 8) and covariance.shape == (0, 8, 8)
