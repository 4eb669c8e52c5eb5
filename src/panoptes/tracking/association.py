"""Box overlap and the two ways of pairing tracks with detections: optimal and greedy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["box_iou_batch", "box_iou_pairs", "match_greedy", "match_optimal", "valid_boxes"]

IndexArray = npt.NDArray[np.intp]

_TIE_BONUS = 1e-9


def valid_boxes(xyxy: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """bool [N]: which corner boxes [N, 4] are finite and have a positive width and height."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(boxes).all(axis=1)
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )


def box_iou_batch(xyxy_a: npt.ArrayLike, xyxy_b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Intersection over union of every pair: boxes [N, 4] and [M, 4] (x1, y1, x2, y2) -> [N, M].

    Float64 in [0, 1]. A box with no area, inverted corners or a NaN overlaps nothing (IoU 0),
    so that a broken detection can never take a track.
    """
    a = np.asarray(xyxy_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(xyxy_b, dtype=np.float64).reshape(-1, 4)
    return _iou(a[:, None, :], b[None, :, :])


def box_iou_pairs(xyxy_a: npt.ArrayLike, xyxy_b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Intersection over union of row i of [K, 4] with row i of [K, 4] -> float64 [K] in [0, 1].

    Degenerate boxes overlap nothing, as in :func:`box_iou_batch`.
    """
    a = np.asarray(xyxy_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(xyxy_b, dtype=np.float64).reshape(-1, 4)
    return _iou(a, b)


def _iou(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU of boxes [..., 4] that broadcast against each other."""
    # np.maximum rather than np.clip: the same result at a third of the overhead on small arrays.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
        area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
        inter_w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
        inter_h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
        intersection = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
        union = area_a + area_b - intersection
        iou = np.asarray(intersection / union, dtype=np.float64)
        # 0/0 (two empty boxes), NaN corners and infinities all end here.
        iou[~(np.isfinite(iou) & (union > 0))] = 0.0
    return np.minimum(iou, 1.0, out=iou)


def match_optimal(
    similarity: npt.NDArray[np.float64], min_similarity: float
) -> tuple[IndexArray, IndexArray]:
    """Pairs (row, column) of ``similarity`` [T, D] that maximise the total similarity margin.

    Only pairs with ``similarity >= min_similarity`` may be chosen; a row or column may stay
    unpaired. Returns two intp arrays [K] (rows, columns), rows ascending.

    The Hungarian method on the margins ``similarity - min_similarity`` (zero where a pair is not
    allowed) is the same problem as lapjv's assignment with a cost limit, which ByteTrack uses:
    leaving a row and a column unpaired costs exactly the limit, so two weak pairs never beat one
    strong pair just because they are two.
    """
    allowed = similarity >= min_similarity
    pair_rows, pair_cols = np.nonzero(allowed)
    if len(pair_rows) == 0 or (allowed.sum(axis=0).max() == 1 and allowed.sum(axis=1).max() == 1):
        # No row or column has a choice to make (objects apart from each other, the usual
        # frame): every allowed pair is in the optimal assignment, and no solver is needed.
        return pair_rows.astype(np.intp), pair_cols.astype(np.intp)
    # Rows and columns with no allowed pair cannot take part: dropping them shrinks the problem,
    # which matters when most tracks sit far from most detections.
    rows = np.flatnonzero(allowed.any(axis=1))
    cols = np.flatnonzero(allowed.any(axis=0))
    sub_allowed = allowed[np.ix_(rows, cols)]
    # The tiny bonus makes a pair exactly at the threshold worth more than no pair at all.
    margin = np.where(
        sub_allowed, similarity[np.ix_(rows, cols)] - min_similarity + _TIE_BONUS, 0.0
    )
    # Imported here: SciPy takes a third of a second to import; `import panoptes` need not pay.
    from scipy.optimize import linear_sum_assignment

    picked_rows, picked_cols = linear_sum_assignment(margin, maximize=True)
    # Pairs not allowed (margin zero) can still fill places in the assignment: drop them.
    keep = sub_allowed[picked_rows, picked_cols]
    return rows[picked_rows[keep]], cols[picked_cols[keep]]


def match_greedy(
    similarity: npt.NDArray[np.float64], min_similarity: float
) -> tuple[IndexArray, IndexArray]:
    """Pairs (row, column) of ``similarity`` [T, D] taken best first, each row and column once.

    Only pairs with ``similarity >= min_similarity`` are considered; ties go to the lower row,
    then the lower column. Returns two intp arrays [K] (rows, columns), best pair first.
    """
    candidate_rows, candidate_cols = np.nonzero(similarity >= min_similarity)
    order = np.argsort(-similarity[candidate_rows, candidate_cols], kind="stable")
    row_taken = np.zeros(similarity.shape[0], bool)
    col_taken = np.zeros(similarity.shape[1], bool)
    picked_rows: list[int] = []
    picked_cols: list[int] = []
    # A Python loop over the candidate pairs only, which after the threshold number about one
    # per object: no library offers greedy matching and a vectorised form would not be clearer.
    for row, col in zip(
        candidate_rows[order].tolist(), candidate_cols[order].tolist(), strict=True
    ):
        if row_taken[row] or col_taken[col]:
            continue
        row_taken[row] = col_taken[col] = True
        picked_rows.append(row)
        picked_cols.append(col)
    return np.asarray(picked_rows, np.intp), np.asarray(picked_cols, np.intp)
