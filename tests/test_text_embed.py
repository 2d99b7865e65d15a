"""The text embedder against the reference implementation of its model's recipe."""

import numpy as np
import pytest


def test_the_embedder_matches_sentence_transformers(text_embedder):
    st = pytest.importorskip("sentence_transformers")
    from evident.tools.specs import minilm_path

    texts = ["a bar chart with a legend", "Modified Struve functions", "x", "a " * 300]
    reference = st.SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    expected = reference.encode(texts, normalize_embeddings=True)
    got = text_embedder.encode(texts)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert text_embedder.encode([]).shape == (0, 384)
