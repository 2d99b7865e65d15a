"""Query-word attribution: which words of the query carried the match with a result.

The value of a set S of the query's words is `v(S) = cos(text(S), image)`, the words of S
kept in their original order; the empty set is the empty string (the model's text for
"no words"). Two estimators:
- `"shapley"`: Shapley values of v over the words, exact (all 2^n subsets) up to
  `exact_max` words, else averaged over `permutations` random orders, each paired with its
  reverse (antithetic sampling). The contributions add up to `v(all) - v(empty)`, so each
  reads as "the cosine this word added", interactions shared fairly between words.
- `"loo"`: leave-one-word-out, `v(all) - v(all but this word)`; cheap, blind to words
  that only matter together.
The texts for every subset are encoded once, in batches, and shared by all results.

Not handled: phrases as one player, sub-word tokens, stop-word lists (a word that does
not matter gets about 0, which is itself the answer).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Literal

import numpy as np

from evident.tools.errors import InputError
from evident.tools.records import QueryTerm

Estimator = Literal["shapley", "loo"]


def query_terms(
    encoder: Any,
    text: str,
    image_embeddings: np.ndarray,
    *,
    method: Estimator = "shapley",
    exact_max: int = 6,
    permutations: int = 16,
    seed: int = 0,
) -> list[tuple[QueryTerm, ...]]:
    """Per-word contributions of `text` to each image's cosine; one tuple per image row."""
    words = text.split()
    images = np.atleast_2d(np.asarray(image_embeddings, dtype=np.float32))
    if not words:
        return [() for _ in images]
    if method == "loo":
        subsets = [frozenset(range(len(words)))] + [
            frozenset(range(len(words))) - {i} for i in range(len(words))
        ]
    elif method == "shapley":
        orders = _orders(len(words), exact_max, permutations, seed)
        subsets = _subsets(len(words), exact_max, orders)
    else:
        raise InputError(f"Unknown attribution method {method!r}; known: shapley, loo.")
    texts = [" ".join(words[j] for j in sorted(s)) for s in subsets]
    values = dict(zip(subsets, encoder.encode_texts(texts) @ images.T, strict=True))
    if method == "loo":
        full = values[subsets[0]]
        phi = np.stack([full - values[s] for s in subsets[1:]])
    elif len(words) <= exact_max:
        phi = _exact_shapley(len(words), values)
    else:
        phi = _sampled_shapley(len(words), values, orders)
    return [
        tuple(QueryTerm(w, float(phi[j, i])) for j, w in enumerate(words))
        for i in range(len(images))
    ]


def _orders(n: int, exact_max: int, permutations: int, seed: int) -> list[list[int]]:
    if n <= exact_max:
        return []
    rng = np.random.default_rng(seed)
    orders = []
    for _ in range(max(1, permutations // 2)):
        order = rng.permutation(n).tolist()
        orders += [order, order[::-1]]
    return orders


def _subsets(n: int, exact_max: int, orders: list[list[int]]) -> list[frozenset[int]]:
    if n <= exact_max:
        return [frozenset(c) for k in range(n + 1) for c in combinations(range(n), k)]
    seen = {frozenset(order[:k]) for order in orders for k in range(n + 1)}
    return sorted(seen, key=lambda s: (len(s), sorted(s)))


def _exact_shapley(n: int, values: dict[frozenset[int], np.ndarray]) -> np.ndarray:
    """`phi[j] = sum over S without j of |S|! (n-|S|-1)! / n! * (v(S + j) - v(S))`."""
    phi = np.zeros((n, *next(iter(values.values())).shape))
    for s, v in values.items():
        if len(s) == n:
            continue
        weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
        for j in range(n):
            if j not in s:
                phi[j] += weight * (values[s | {j}] - v)
    return phi


def _sampled_shapley(n: int, values, orders: list[list[int]]) -> np.ndarray:
    phi = np.zeros((n, *next(iter(values.values())).shape))
    for order in orders:
        for k, j in enumerate(order):
            phi[j] += values[frozenset(order[: k + 1])] - values[frozenset(order[:k])]
    return phi / len(orders)
