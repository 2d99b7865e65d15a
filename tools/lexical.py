"""Lexical search over the words read in a collection's images: BM25 (Robertson et al.).

The words collection keeps each image's search document (`ingest.ocr.search_document`:
tokens, repeated by the role of their line). Chroma has no ranked lexical search on a local
database, so `WordIndex.build` reads every document once (a page at a time) into a sparse
matrix of BM25 term weights; a query is then one sparse column sum. At 100k images the
build takes a second or two and the index a few tens of MB; a `Retrieval` keeps it for all
its queries and rebuilds it when the collection's count changes.

Tokens are `ingest.ocr.words`: lower case, identifiers split ("halfLogistic" -> "half
logistic"), then reduced to their Snowball (Porter 2) stems, so a query and a figure's text
meet however either is written: "Skeletonization" finds a panel titled "skeletonize",
"thresholding" one that says "threshold". On the Debian documentation figures stemming
lifts recall@10 from the words alone from 0.347 to 0.385 (README). The stored search
documents keep the words as read; stems are taken when the index is built.
Not handled: synonyms (the embedding half of the words signal covers those).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import snowballstemmer
from scipy import sparse

from evident.tools.ingest.ocr import words
from evident.tools.store import iter_documents

K1, B = 1.2, 0.75
_STOP = """a an the of in on at to for with and or by from as is are was were be this that
these those it its into over under vs show shows showing figure plot chart image"""
STOP = frozenset(_STOP.split())
_STEMMER = snowballstemmer.stemmer("english")
_STEMMING = threading.Lock()  # a Snowball stemmer keeps its word in itself while it works


def stem(token: str) -> str:
    """A token's Snowball stem (numbers, short tokens and very long ones as they are).

    >>> [stem(t) for t in ("skeletonization", "skeletonize", "thresholding", "2010")]
    ['skeleton', 'skeleton', 'threshold', '2010']
    """
    if not 4 <= len(token) <= 40 or not token.isalpha():
        return token
    return _stem(token)


@lru_cache(maxsize=1 << 18)
def _stem(token: str) -> str:
    with _STEMMING:
        return _STEMMER.stemWord(token)


@dataclass(frozen=True)
class WordIndex:
    ids: tuple[str, ...]
    vocab: dict[str, int]
    weights: sparse.csc_matrix  # (documents, vocabulary): BM25 weight of each term there
    count: int  # the words collection's size when built
    idf: np.ndarray  # per vocabulary term
    mean_length: float

    @classmethod
    def build(cls, collection) -> WordIndex:
        ids, docs = [], []
        for id_, doc in iter_documents(collection):
            ids.append(id_)
            docs.append(Counter(t for t in (doc or "").split() if t))
        vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        for r, counts in enumerate(docs):
            for term, tf in counts.items():
                rows.append(r)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n = max(1, len(docs))
        tf = sparse.csr_matrix((np.asarray(tfs, np.float32), (rows, cols)), (len(docs), len(vocab)))
        tf, vocab = _stemmed(tf, vocab)
        lengths = np.asarray(tf.sum(1)).ravel()
        mean = float(lengths.mean()) if len(lengths) else 1.0
        norm = K1 * (1 - B + B * lengths / max(1e-9, mean))
        df = np.bincount(tf.col, minlength=len(vocab))
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        w = idf[tf.col] * tf.data * (K1 + 1) / (tf.data + norm[tf.row])
        weights = sparse.csc_matrix((w, (tf.row, tf.col)), tf.shape)
        return cls(tuple(ids), vocab, weights, len(ids), idf, mean)

    def scores(self, text: str, top: int = 200) -> dict[str, float]:
        """The `top` documents' BM25 scores for `text` (only documents with a match)."""
        terms = [self.vocab[t] for t in query_terms(text) if t in self.vocab]
        if not terms or not self.ids:
            return {}
        total = np.asarray(self.weights[:, terms].sum(1)).ravel()
        hits = np.flatnonzero(total > 0)
        best = hits[np.argsort(-total[hits], kind="stable")[:top]]
        return {self.ids[i]: float(total[i]) for i in best}

    def score(self, text: str, tokens: list[str]) -> float:
        """BM25 of `text` against a document of `tokens`, with this index's statistics
        (how a result's lexical score changes when some of its words are taken out)."""
        counts = Counter(map(stem, tokens))
        norm = K1 * (1 - B + B * len(tokens) / max(1e-9, self.mean_length))
        total = 0.0
        for t in query_terms(text):
            if t in self.vocab and counts[t]:
                tf = counts[t]
                total += float(self.idf[self.vocab[t]]) * tf * (K1 + 1) / (tf + norm)
        return total


def query_tokens(text: str) -> list[str]:
    """The tokens of a query that can match words in an image (no stop words).

    >>> query_tokens("the halfLogistic pdf of a figure")
    ['half', 'logistic', 'pdf']
    """
    return [t for t in words(text) if t not in STOP]


def query_terms(text: str) -> list[str]:
    """The distinct stems of a query's tokens, in order.

    >>> query_terms("Fitted models: fitting the model")
    ['fit', 'model']
    """
    return list(dict.fromkeys(map(stem, query_tokens(text))))


def _stemmed(tf: sparse.csr_matrix, vocab: dict[str, int]):
    """Term counts over surface tokens folded into counts over their stems: `(counts,
    one entry per document and stem (COO), the stems' vocabulary)`."""
    stems: dict[str, int] = {}
    column = [stems.setdefault(stem(term), len(stems)) for term in vocab]
    fold = sparse.csr_matrix(
        (np.ones(len(column), np.float32), (np.arange(len(column)), column)),
        (len(column), len(stems)),
    )
    return (tf @ fold).tocoo(), stems


def word_index(store, collection: str, have: WordIndex | None = None) -> WordIndex | None:
    """The collection's lexical index: `have` if it is still current (same count), else
    built anew; None when no words were read in the collection."""
    words = store.words(collection)
    if words is None:
        return None
    if have is not None and have.count == words.count():
        return have
    return WordIndex.build(words)
