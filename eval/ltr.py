"""Learning to rank: fit the reranker's fusion weights instead of setting them by hand.

Each (query, candidate) pair gets the four features of `evident.tools.fusion.FEATURES` (whole
image, best crop, caption and heatmap concentration), computed by `evident.tools.fusion` exactly
as `--rerank learned:FILE` computes them at search time.

`fit_fusion` learns weights with ListNet (top-one softmax cross-entropy between the
relevance distribution and the softmax of the scores over each query's candidate list,
Cao et al. 2007) on standardised features, L2-regularised, by full-batch gradient descent:
the loss is convex, so it has one minimum and the fit is deterministic. `compare_fusion`
scores the learned weights against the hand-set fusion of `MultiScaleReranker` on other
queries: nDCG@10, recall@5, precision@5, with a paired bootstrap interval on the gain.

Not handled: graded relevance, non-linear rankers, features of the query alone (they do
not change a ranking), tuning `l2` by cross-validation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evident.eval.metrics import (
    bootstrap_ci,
    bootstrap_indices,
    difference_ci,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from evident.tools.fusion import FEATURES, Fusion, filled
from evident.tools.rerank import MultiScaleReranker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateList:
    """One query's candidates: `features` `(n, len(FEATURES))` (caption NaN when the hit
    has none), `relevant` `(n,)` 0/1, and how many relevant items the collection holds."""

    query: str
    features: np.ndarray
    relevant: np.ndarray
    n_relevant: int
    level: str = "all"


def hand_set_scores(features: np.ndarray, crop_weight=None, caption_weight=None) -> np.ndarray:
    """`MultiScaleReranker`'s fusion (its default weights unless given); no concentration.

    >>> hand_set_scores(np.array([[0.2, 0.4, np.nan, 0.5], [0.2, 0.4, 0.8, 0.5]]))
    array([0.3  , 0.425])
    """

    cw = MultiScaleReranker.crop_weight if crop_weight is None else crop_weight
    tw = MultiScaleReranker.caption_weight if caption_weight is None else caption_weight
    f = np.asarray(features, dtype=np.float64)
    visual = (1 - cw) * f[:, 0] + cw * f[:, 1]
    caption = f[:, 2]
    return np.where(np.isnan(caption), visual, (1 - tw) * visual + tw * np.nan_to_num(caption))


def fit_fusion(lists: Sequence[CandidateList], *, l2: float = 1e-3, steps: int = 50) -> Fusion:
    """ListNet weights over the lists that hold at least one relevant candidate.

    Damped Newton steps (four weights: the Hessian is 4 x 4), halving a step until the
    loss falls; stops when the gradient vanishes or after `steps` steps.
    """
    used = [c for c in lists if c.relevant.sum() > 0 and len(c.relevant) > 1]
    if not used:
        raise ValueError("no candidate list holds a relevant item (and another candidate)")
    stacked = np.concatenate([filled(c.features) for c in used])
    mean, std = stacked.mean(0), stacked.std(0)
    std = np.where(std > 1e-12, std, 1.0)  # a constant feature keeps weight 0
    n, d = max(len(c.relevant) for c in used), stacked.shape[1]
    x = np.zeros((len(used), n, d))
    mask = np.zeros((len(used), n), dtype=bool)
    target = np.zeros((len(used), n))
    for i, c in enumerate(used):
        m = len(c.relevant)
        x[i, :m], mask[i, :m] = (filled(c.features) - mean) / std, True
        target[i, :m] = c.relevant / c.relevant.sum()

    def loss_and_p(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = np.where(mask, x @ w, -np.inf)
        s = s - s.max(1, keepdims=True)
        log_p = np.where(mask, s - np.log(np.exp(s).sum(1, keepdims=True)), 0.0)
        return float(-(target * log_p).sum(1).mean() + l2 * w @ w), np.exp(log_p) * mask

    w = np.zeros(d)
    loss, p = loss_and_p(w)
    losses = [loss]
    for _ in range(steps):
        grad = np.einsum("qn,qnd->d", p - target, x) / len(used) + 2 * l2 * w
        if np.abs(grad).max() < 1e-9:
            break
        mean_x = np.einsum("qn,qnd->qd", p, x)
        second = np.einsum("qn,qnd,qne->de", p, x, x) - np.einsum("qd,qe->de", mean_x, mean_x)
        hessian = second / len(used) + (2 * l2 + 1e-9) * np.eye(d)
        step, t = np.linalg.solve(hessian, grad), 1.0
        while (trial := loss_and_p(w - t * step))[0] > loss and t > 1e-6:
            t /= 2
        w, (loss, p) = w - t * step, trial
        losses.append(loss)
    log.info("ListNet on %d lists: loss %.4f -> %.4f", len(used), losses[0], losses[-1])
    return Fusion(w, mean, std, loss=losses)


def evaluate(
    lists: Sequence[CandidateList], score: Callable[[np.ndarray], np.ndarray]
) -> dict[str, list[float]]:
    """Per-query nDCG@10, recall@5 and precision@5 of the order `score` gives each list."""
    out: dict[str, list[float]] = {"ndcg@10": [], "recall@5": [], "precision@5": []}
    for c in lists:
        order = np.argsort(-score(c.features), kind="stable")
        ranked = [str(i) for i in order]
        relevant = {str(i) for i in np.flatnonzero(c.relevant)}
        # relevant items the first stage missed count too: padded ids that never rank
        relevant |= {f"missed-{j}" for j in range(c.n_relevant - len(relevant))}
        out["ndcg@10"].append(ndcg_at_k(ranked, relevant, 10))
        out["recall@5"].append(recall_at_k(ranked, relevant, 5))
        out["precision@5"].append(precision_at_k(ranked, relevant, 5))
    return out


def compare_fusion(
    train: Sequence[CandidateList],
    test: Sequence[CandidateList],
    *,
    l2: float = 1e-3,
    steps: int = 50,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit on `train`, then hand-set vs learned on `test`, with 95% paired intervals."""
    fusion = fit_fusion(train, l2=l2, steps=steps)
    test = [c for c in test if c.n_relevant > 0]
    hand, learned = evaluate(test, hand_set_scores), evaluate(test, fusion.scores)
    idx = bootstrap_indices(len(test), n_boot, seed=seed)
    report: dict[str, Any] = {"features": list(FEATURES), "fusion": fusion.to_dict()}
    report |= {"train_queries": len(train), "test_queries": len(test)}
    for name, values in (("hand_set", hand), ("learned", learned)):
        report[name] = {
            k: {"mean": float(np.mean(v)), "ci95": bootstrap_ci(v, indices=idx)}
            for k, v in values.items()
        }
    report["by_level"] = {
        level: {
            name: {k: float(np.mean([v[i] for i in members])) for k, v in values.items()}
            for name, values in (("hand_set", hand), ("learned", learned))
        }
        | {"queries": len(members)}
        for level in sorted({c.level for c in test})
        for members in [[i for i, c in enumerate(test) if c.level == level]]
    }
    report["learned_minus_hand_set"] = {
        k: {
            "mean": float(np.mean(learned[k]) - np.mean(hand[k])),
            "ci95": difference_ci((learned[k], None), (hand[k], None), indices=idx),
        }
        for k in hand
    }
    return report
