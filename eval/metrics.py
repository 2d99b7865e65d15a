"""Evaluation metrics: pure functions of ranked ids, heatmaps and boxes, with worked examples.

Retrieval (binary relevance, one ranked list per query):
- `recall_at_k`: share of the relevant items found in the top k (for a query with one
  relevant item, the hit rate);
- `success_at_k`: 1 if any relevant item is in the top k;
- `precision_at_k`: relevant items in the top k over k (a short list counts its missing
  places as misses);
- `capped_precision_at_k`: relevant items in the top k over min(k, number relevant), so a
  perfect list scores 1 even when fewer than k images are relevant (plain precision@5
  cannot exceed 0.4 for a query with two; on the figure benchmark's attribute queries a
  perfect ranking scores 0.733 by plain precision@5);
- `reciprocal_rank`: 1 / rank of the first relevant item, 0 if none is listed (so the mean
  over queries is MRR@len(ranked));
- `ndcg_at_k`: DCG with gain 1 / log2(rank + 1), over the DCG of a perfect list.

Localization (a heatmap `(H, W)` at the image's size; boxes `(x0, y0, x1, y1)` in image
pixels, x1/y1 exclusive, as the figure benchmark and `evident.tools.evidence.regions` write them):
- `pointing_game`: is the hottest pixel inside a target box? Pixels tied at the maximum
  share the vote (the expected score when a tie is broken at random), so a flat or empty
  map scores the share of the image the targets cover: chance, not a hit. With
  `tolerance` it is the pointing game as Zhang et al. (ECCV 2016) define it: a hit when
  the peak is within that many pixels of a target (they and TorchRay use 15), which
  forgives a map's resolution: a patch-level map's peak sits at a patch's centre, which
  a thin target such as a title or an axis label may not reach;
- `energy_pointing_game`: the share of all heat inside the union of target boxes; an empty
  map counts as flat, for the same reason;
- `best_iou`: IoU of a box with its best-matching target.

Statistics: `bootstrap_indices` draws one set of resampled unit indices that every method
shares (a paired bootstrap), `bootstrap_ci` reads a 95% percentile interval of a mean or
of a ratio of sums (clustered data: resample queries, average over their images) off
those indices, `difference_ci` the interval of a difference on the same draws.

Not handled: graded relevance, targets that are not boxes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

Box = Sequence[int]


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant items in the top k.

    >>> recall_at_k(["a", "x", "b"], {"a", "b", "c", "d"}, 2)
    0.25
    """
    if not relevant:
        raise ValueError("recall needs at least one relevant item")
    return sum(r in relevant for r in ranked[:k]) / len(relevant)


def success_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1.0 if any relevant item is in the top k.

    >>> success_at_k(["x", "y", "a"], {"a"}, 2), success_at_k(["x", "y", "a"], {"a"}, 3)
    (0.0, 1.0)
    """
    return float(any(r in relevant for r in ranked[:k]))


def precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Relevant items in the top k, over k.

    >>> precision_at_k(["a", "x"], {"a", "b"}, 5)
    0.2
    """
    return sum(r in relevant for r in ranked[:k]) / k


def capped_precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Relevant items in the top k, over min(k, number relevant) (1.0 when none are).

    >>> ranked, relevant = ["a", "b", "x"], {"a", "b"}
    >>> capped_precision_at_k(ranked, relevant, 5), precision_at_k(ranked, relevant, 5)
    (1.0, 0.4)
    """
    if not relevant:
        return 1.0
    return sum(r in relevant for r in ranked[:k]) / min(k, len(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank of the first relevant item; 0.0 if none is listed.

    >>> reciprocal_rank(["x", "a", "b"], {"a", "b"}), reciprocal_rank(["x"], {"a"})
    (0.5, 0.0)
    """
    return next((1.0 / i for i, r in enumerate(ranked, 1) if r in relevant), 0.0)


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Binary-relevance nDCG; hits at ranks 1 and 3 of two relevant items:
    (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309 = 0.9197.

    >>> round(ndcg_at_k(["a", "x", "b"], {"a", "b"}, 10), 4)
    0.9197
    """
    if not relevant:
        raise ValueError("nDCG needs at least one relevant item")
    dcg = sum(1.0 / np.log2(i + 1) for i, r in enumerate(ranked[:k], 1) if r in relevant)
    ideal = sum(1.0 / np.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return float(dcg / ideal)


RETRIEVAL_KEYS = (
    "recall@1",
    "recall@5",
    "recall@10",
    "success@1",
    "success@5",
    "success@10",
    "precision@5",
    "capped_precision@5",
    "mrr",
    "ndcg@10",
)


def retrieval_scores(ranked: Sequence[str], relevant: Collection[str]) -> dict[str, float]:
    """Every retrieval metric of one ranked list (keys `RETRIEVAL_KEYS`); `ranked` should
    hold at least 10 items for the @10 metrics to mean what they say.

    >>> s = retrieval_scores(["x", "a"], {"a"}); s["recall@1"], s["recall@5"], s["mrr"]
    (0.0, 1.0, 0.5)
    """
    out: dict[str, float] = {}
    for k in (1, 5, 10):
        out[f"recall@{k}"] = recall_at_k(ranked, relevant, k)
        out[f"success@{k}"] = success_at_k(ranked, relevant, k)
    out["precision@5"] = precision_at_k(ranked, relevant, 5)
    out["capped_precision@5"] = capped_precision_at_k(ranked, relevant, 5)
    out["mrr"] = reciprocal_rank(ranked, relevant)
    out["ndcg@10"] = ndcg_at_k(ranked, relevant, 10)
    return {key: out[key] for key in RETRIEVAL_KEYS}


def box_mask(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """The union of `boxes` as a boolean `(H, W)` mask, clipped to the image.

    >>> box_mask([(1, 0, 3, 1)], (2, 4)).astype(int).tolist()
    [[0, 1, 1, 0], [0, 0, 0, 0]]
    """
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def _heat(heat: np.ndarray) -> np.ndarray:
    h = np.asarray(heat, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"a heatmap is (H, W), not {h.shape}")
    if not np.isfinite(h).all():
        raise ValueError("the heatmap holds NaN or infinite values")
    return h.clip(min=0)


def pointing_game(heat: np.ndarray, boxes: Sequence[Box], tolerance: float = 0.0) -> float:
    """1.0 if the peak is inside a box (or within `tolerance` pixels of one, by Euclidean
    distance), 0.0 if not; tied peaks share the vote.

    >>> heat = np.zeros((2, 4)); heat[0, 1] = 1.0
    >>> pointing_game(heat, [(1, 0, 2, 1)]), pointing_game(heat, [(2, 0, 4, 2)])
    (1.0, 0.0)
    >>> heat[1, 3] = 1.0  # two peaks, one inside
    >>> pointing_game(heat, [(1, 0, 2, 1)])
    0.5
    >>> pointing_game(np.zeros((2, 4)), [(0, 0, 2, 1)])  # empty map: the covered share
    0.25
    >>> heat = np.zeros((1, 40)); heat[0, 30] = 1.0  # 15 pixels right of the box's last column
    >>> [pointing_game(heat, [(0, 0, 16, 1)], t) for t in (0, 14, 15)]
    [0.0, 0.0, 1.0]
    >>> pointing_game(heat, [(0, 12, 16, 13)], 15)  # 15 across and 12 down: 19.2 away
    0.0
    """
    h = _heat(heat)
    peaks = h == h.max()
    if tolerance <= 0:
        return float((peaks & box_mask(boxes, h.shape)).sum() / peaks.sum())
    ys, xs = np.nonzero(peaks)
    near = np.zeros(len(xs), dtype=bool)
    for x0, y0, x1, y1 in boxes:  # distance from each peak pixel to the box's pixels
        dx = np.maximum.reduce([x0 - xs, np.zeros_like(xs), xs - (x1 - 1)])
        dy = np.maximum.reduce([y0 - ys, np.zeros_like(ys), ys - (y1 - 1)])
        near |= np.hypot(dx, dy) <= tolerance
    return float(near.mean())


def energy_pointing_game(heat: np.ndarray, boxes: Sequence[Box]) -> float:
    """Share of the heat inside the boxes (Score-CAM's energy-based pointing game).

    >>> heat = np.array([[3.0, 1.0], [0.0, 0.0]])
    >>> energy_pointing_game(heat, [(0, 0, 1, 1)])
    0.75
    >>> energy_pointing_game(np.zeros((2, 2)), [(0, 0, 1, 1)])  # empty map: flat
    0.25
    """
    h = _heat(heat)
    mask = box_mask(boxes, h.shape)
    total = h.sum()
    if total <= 0:
        return float(mask.mean())
    return float(h[mask].sum() / total)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x1/y1 exclusive).

    >>> iou((0, 0, 2, 2), (1, 0, 3, 2))
    0.3333333333333333
    """
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_iou(box: Box | None, targets: Sequence[Box]) -> float:
    """IoU of `box` with its best-matching target; 0.0 when there is no box.

    >>> best_iou((0, 0, 2, 2), [(5, 5, 6, 6), (0, 0, 2, 1)]), best_iou(None, [(0, 0, 1, 1)])
    (0.5, 0.0)
    """
    if box is None or not targets:
        return 0.0
    return max(iou(box, t) for t in targets)


def bootstrap_indices(n_units: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """`(n_boot, n_units)` unit indices drawn with replacement; pass the same array for
    every method to get paired intervals.

    >>> bootstrap_indices(3, 2, seed=0).shape
    (2, 3)
    """
    rng = np.random.default_rng(seed)
    if n_units == 0:
        return np.zeros((n_boot, 0), dtype=int)
    return rng.integers(0, n_units, size=(n_boot, n_units))


def _resampled(sums, counts, indices: np.ndarray) -> np.ndarray:
    s = np.asarray(sums, dtype=np.float64)
    c = np.ones_like(s) if counts is None else np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s[indices].sum(1) / c[indices].sum(1)


def bootstrap_ci(
    sums: Sequence[float], counts: Sequence[float] | None = None, *, indices: np.ndarray
) -> tuple[float, float] | None:
    """95% percentile interval of `sum(sums) / sum(counts)` (the mean without `counts`);
    None when there is nothing to resample.

    >>> idx = bootstrap_indices(4, 200, seed=0)
    >>> bootstrap_ci([1.0, 1.0, 1.0, 1.0], indices=idx)
    (1.0, 1.0)
    >>> lo, hi = bootstrap_ci([0.0, 1.0, 0.0, 1.0], indices=idx); lo < 0.5 < hi
    True
    """
    if indices.shape[1] == 0:
        return None
    stats = _resampled(sums, counts, indices)
    if np.isnan(stats).all():
        return None
    lo, hi = np.nanpercentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def difference_ci(
    a: tuple[Sequence[float], Sequence[float] | None],
    b: tuple[Sequence[float], Sequence[float] | None],
    *,
    indices: np.ndarray,
) -> tuple[float, float] | None:
    """95% interval of stat(a) - stat(b), both on the same resampled units (paired); each
    side is `(sums, counts)` as in `bootstrap_ci`.

    >>> idx = bootstrap_indices(3, 100, seed=1)
    >>> difference_ci(([1.0, 0.5, 0.0], None), ([0.5, 0.0, -0.5], None), indices=idx)
    (0.5, 0.5)
    """
    if indices.shape[1] == 0:
        return None
    diff = _resampled(*a, indices) - _resampled(*b, indices)
    if np.isnan(diff).all():
        return None
    lo, hi = np.nanpercentile(diff, [2.5, 97.5])
    return float(lo), float(hi)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95)) -> list[float | None]:
    """Linear-interpolation percentiles; None for an empty sample.

    >>> percentiles([10.0, 20.0, 30.0, 40.0, 50.0])
    [30.0, 48.0]
    >>> percentiles([])
    [None, None]
    """
    if len(values) == 0:
        return [None for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs)]
