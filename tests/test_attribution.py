"""Query-word attribution: exact on an additive fake, efficient and batched on a real tower."""

import itertools
import math

import numpy as np
import pytest

from evident.tools.errors import InputError
from evident.tools.evidence.attribution import query_terms
from tests.evidence_fixtures import tiny

WEIGHTS = {"a": 0.0, "red": 0.3, "small": -0.1, "circle": 0.5, "left": 0.05}


class AdditiveTexts:
    """v(S) = sum of the words' weights (image embedding e0): Shapley must return them."""

    def __init__(self) -> None:
        self.batches = []

    def encode_texts(self, texts):
        self.batches.append(list(texts))
        out = np.zeros((len(texts), 2), np.float32)
        for i, text in enumerate(texts):
            out[i, 0] = sum(WEIGHTS[w] for w in text.split())
        return out


IMAGE = np.array([[1.0, 0.0]], np.float32)


@pytest.mark.parametrize("method", ["shapley", "loo"])
def test_additive_words_get_exactly_their_weights(method):
    fake = AdditiveTexts()
    (terms,) = query_terms(fake, "a red small circle", IMAGE, method=method)
    assert [t.term for t in terms] == ["a", "red", "small", "circle"]
    for t in terms:
        assert t.contribution == pytest.approx(WEIGHTS[t.term], abs=1e-6)
    assert len(fake.batches) == 1  # every subset in one call


def test_sampled_shapley_beyond_the_exact_limit_is_still_exact_when_additive():
    (terms,) = query_terms(AdditiveTexts(), "a red small circle left", IMAGE, exact_max=3)
    for t in terms:
        assert t.contribution == pytest.approx(WEIGHTS[t.term], abs=1e-6)


def _brute_shapley(words, v):
    n = len(words)
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        for k, j in enumerate(order):
            phi[j] += v(frozenset(order[: k + 1])) - v(frozenset(order[:k]))
    return phi / math.factorial(n)


def test_exact_shapley_matches_permutations_and_adds_up_on_a_real_text_tower():
    enc = tiny("evident-tiny-vit")
    text = "a small red circle"
    words = text.split()
    images = np.random.default_rng(0).normal(size=(2, enc.dim)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    results = query_terms(enc, text, images)
    assert len(results) == 2

    def v(subset, i=0):
        phrase = " ".join(words[j] for j in sorted(subset))
        return float(enc.encode_texts([phrase])[0] @ images[i])

    phi = [t.contribution for t in results[0]]
    np.testing.assert_allclose(phi, _brute_shapley(words, v), atol=1e-5)
    total = v(frozenset(range(4))) - v(frozenset())
    assert sum(phi) == pytest.approx(total, abs=1e-5)  # efficiency


def test_sampled_shapley_adds_up_and_edge_cases():
    enc = tiny("evident-tiny-vit")
    image = enc.encode_texts(["a red circle"])[:1]
    text = "one two three four five six seven eight"
    (terms,) = query_terms(enc, text, image, permutations=4)
    total = enc.encode_texts([text, ""]) @ image[0]
    assert sum(t.contribution for t in terms) == pytest.approx(total[0] - total[1], abs=1e-5)
    assert query_terms(enc, "   ", image) == [()]
    with pytest.raises(InputError, match="shapley, loo"):
        query_terms(enc, "red", image, method="lime")
