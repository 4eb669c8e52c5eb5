"""Decodes YOLO-Pose output tensors into people with 17 keypoints, in a probe.

The ``pose`` infer element runs the model with ``parser: none`` and ``output_tensor_meta: true``:
it finds no objects itself and hands each frame's raw output to this probe, which turns it into
objects with keypoints. The tracker then tracks them and the osd draws their skeletons. This is
the shape of DeepStream's YOLO-Pose sample, in plain numpy instead of ctypes casts.
"""

from __future__ import annotations

import cv2
import numpy as np

from panoptes import Batch, TensorMeta

SCORE_THRESHOLD = 0.5
NMS_IOU = 0.45
NUM_KEYPOINTS = 17


def decode_pose(batch: Batch) -> None:
    """Add the people that the pose model's tensors hold to each frame."""
    for frame in batch:
        for tensor_meta in frame.meta.tensor_meta:
            xyxy, score, keypoints = decode_output(tensor_meta)
            # Network-input pixels back to the frame's own, through the letterbox the model saw.
            xyxy = tensor_meta.letterbox.to_source(xyxy)
            keypoints[..., :2] = tensor_meta.letterbox.points_to_source(keypoints[..., :2])
            width, height = frame.size_wh
            np.clip(xyxy[:, 0::2], 0, width, out=xyxy[:, 0::2])
            np.clip(xyxy[:, 1::2], 0, height, out=xyxy[:, 1::2])
            frame.objects.add(
                xyxy,
                score,
                np.zeros(len(score), np.int32),
                ["person"] * len(score),
                component_id=tensor_meta.component_id,
                keypoints=keypoints,
            )


def decode_output(
    tensor_meta: TensorMeta,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """People in one frame's output, in network-input pixels.

    The output ``output0`` is [56, 8400]: per anchor, box centre and size (cx, cy, w, h), the
    person score, then 17 keypoints as (x, y, visibility). Returns xyxy float32 [N, 4],
    score float32 [N] and keypoints float32 [N, 17, 3], after score threshold and NMS.
    """
    rows = next(iter(tensor_meta.tensors.values())).T  # [8400, 56]
    rows = rows[rows[:, 4] >= SCORE_THRESHOLD]
    if len(rows) == 0:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, NUM_KEYPOINTS, 3), np.float32),
        )
    centre, size = rows[:, 0:2], rows[:, 2:4]
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    score = rows[:, 4].astype(np.float32)
    keep = cv2.dnn.NMSBoxes(
        np.concatenate([xyxy[:, :2], size], axis=1).tolist(),
        score.tolist(),
        SCORE_THRESHOLD,
        NMS_IOU,
    )
    keep = np.asarray(keep, np.int64).reshape(-1)
    keypoints = rows[keep, 5:].reshape(-1, NUM_KEYPOINTS, 3).astype(np.float32)
    return xyxy[keep], score[keep], keypoints
