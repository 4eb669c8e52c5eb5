"""Box overlap and the two ways of pairing tracks with detections: optimal and greedy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "box_iou_pairs",
    "match_pairs_greedy",
    "match_pairs_optimal",
    "valid_boxes",
]

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


def box_iou_pairs(xyxy_a: npt.ArrayLike, xyxy_b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Intersection over union of row i of [K, 4] with row i of [K, 4] (x1, y1, x2, y2) ->
    float64 [K] in [0, 1].

    A box with no area, inverted corners or a NaN overlaps nothing (IoU 0), so that a broken
    detection can never take a track.
    """
    a = np.asarray(xyxy_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(xyxy_b, dtype=np.float64).reshape(-1, 4)
    # np.maximum rather than np.clip: the same result at a third of the overhead on small arrays.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
        area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
        inter_w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
        inter_h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
        intersection = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
        union = area_a + area_b - intersection
        iou = np.asarray(intersection / union, dtype=np.float64)
        # 0/0 (two empty boxes), NaN corners and infinities all end here.
        iou[~(np.isfinite(iou) & (union > 0))] = 0.0
    return np.minimum(iou, 1.0, out=iou)


def match_pairs_optimal(
    rows: IndexArray,
    cols: IndexArray,
    similarity: npt.NDArray[np.float64],
    min_similarity: float,
) -> IndexArray:
    """The candidate pairs that together maximise the total similarity margin.

    Candidate k pairs row ``rows[k]`` with column ``cols[k]`` at ``similarity[k]`` (each pair
    given once; a pair not given is not allowed). Only pairs with ``similarity >=
    min_similarity`` may be chosen, each row and column at most once. Returns the chosen
    candidates' indices (intp [K], ascending).

    The Hungarian method on the margins ``similarity - min_similarity`` (zero where a pair is not
    allowed) is the same problem as lapjv's assignment with a cost limit, which ByteTrack uses:
    leaving a row and a column unpaired costs exactly the limit, so two weak pairs never beat one
    strong pair just because they are two.

    A pair whose row and column have no other allowed pair is in every best assignment: in the
    usual frame (objects apart from each other) that is every pair, and no solver runs. Only the
    rows and columns with a choice to make go to the solver, whatever the number of streams
    whose tracks the candidates come from.
    """
    allowed = np.flatnonzero(similarity >= min_similarity)
    if len(allowed) == 0:
        return allowed
    rows, cols = rows[allowed], cols[allowed]
    _, row_of, row_count = np.unique(rows, return_inverse=True, return_counts=True)
    _, col_of, col_count = np.unique(cols, return_inverse=True, return_counts=True)
    alone = (row_count[row_of] == 1) & (col_count[col_of] == 1)
    if alone.all():
        return allowed
    contested = np.flatnonzero(~alone)
    sub_rows, sub_row_of = np.unique(rows[contested], return_inverse=True)
    sub_cols, sub_col_of = np.unique(cols[contested], return_inverse=True)
    # The tiny bonus makes a pair exactly at the threshold worth more than no pair at all.
    margin = np.zeros((len(sub_rows), len(sub_cols)))
    margin[sub_row_of, sub_col_of] = similarity[allowed[contested]] - min_similarity + _TIE_BONUS
    candidate = np.full(margin.shape, -1, np.intp)
    candidate[sub_row_of, sub_col_of] = allowed[contested]
    # Imported here: SciPy takes a third of a second to import; `import panoptes` need not pay.
    from scipy.optimize import linear_sum_assignment

    picked_rows, picked_cols = linear_sum_assignment(margin, maximize=True)
    # Pairs not allowed (margin zero) can still fill places in the assignment: drop them.
    solved = candidate[picked_rows, picked_cols]
    picked = np.concatenate([allowed[alone], solved[solved >= 0]])
    picked.sort()
    return picked


def match_pairs_greedy(
    rows: IndexArray,
    cols: IndexArray,
    similarity: npt.NDArray[np.float64],
    min_similarity: float,
) -> IndexArray:
    """The candidate pairs taken best first, each row and column once (candidates as in
    :func:`match_pairs_optimal`).

    Only pairs with ``similarity >= min_similarity`` are considered; ties go to the lower row,
    then the lower column. Returns the chosen candidates' indices (intp [K]), best pair first.
    """
    allowed = np.flatnonzero(similarity >= min_similarity)
    order = allowed[np.lexsort((cols[allowed], rows[allowed], -similarity[allowed]))]
    row_taken: set[int] = set()
    col_taken: set[int] = set()
    picked: list[int] = []
    # A Python loop over the candidate pairs only, which after the threshold number about one
    # per object: no library offers greedy matching and a vectorised form would not be clearer.
    for index, row, col in zip(
        order.tolist(), rows[order].tolist(), cols[order].tolist(), strict=True
    ):
        if row in row_taken or col in col_taken:
            continue
        row_taken.add(row)
        col_taken.add(col)
        picked.append(index)
    return np.asarray(picked, np.intp)
