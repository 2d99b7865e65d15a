"""Typed records: what tools return and what the REPL, notebooks, JSON and evaluator read.

All are frozen dataclasses with `to_dict()` giving plain JSON-ready values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Query:
    """What the person asked: words, an image path, or both."""

    text: str | None = None
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "image": self.image}


@dataclass(frozen=True)
class Hit:
    """One ranked result. `scores` holds the raw per-signal scores behind `score`
    (cosines; `lexical` is BM25), `contributions` what each signal added to a hybrid
    `score`;
    `first_stage` is set once a reranker has moved the hit: `{"rank": 2, "score": 0.29}`."""

    rank: int
    id: str
    uri: str
    score: float
    caption: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    first_stage: Mapping[str, float] | None = None
    contributions: Mapping[str, float] = field(default_factory=dict)  # signal -> share of score

    def with_rank(self, rank: int, score: float | None = None) -> Hit:
        return replace(self, rank=rank, score=self.score if score is None else score)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rank": self.rank,
            "id": self.id,
            "uri": self.uri,
            "score": round(float(self.score), 6),
            "caption": self.caption,
            "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
            "contributions": dict(self.contributions),
            "metadata": dict(self.metadata),
        }
        out["first_stage"] = None if self.first_stage is None else dict(self.first_stage)
        return out


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class IndexReport:
    """What one `index_paths` run did. `warnings` are what was indexed with a change (a cut
    caption, a renamed metadata key), each said once with how many files it concerns."""

    collection: str
    model: str
    indexed: int = 0
    unchanged: int = 0
    refreshed: int = 0  # already embedded; colours, marks or words brought up to date
    moved: int = 0
    pruned: int = 0
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "refreshed": self.refreshed,
            "moved": self.moved,
            "pruned": self.pruned,
            "skipped": [s.to_dict() for s in self.skipped],
            "warnings": list(self.warnings),
            "collection": self.collection,
            "model": self.model,
        }


# --- Evidence (issue 3): what the evidence engine returns for each explained hit. ---


@dataclass(frozen=True)
class Counterfactual:
    """What happened to the score when a region was removed from the image, against what
    removing boxes of the same size elsewhere in the image does (the null).

    All scores are cosines of the image with the query (`scale` says so in the JSON):
    `score_drop == score_before - score_after`. `removal` names how (dropping the region's
    tokens from the last blocks, a mean fill, a blur). `supported` is true only if the drop
    beats `threshold`: the 90th percentile of `null_drops`, and at least `ABS_FLOOR` (0.0005).
    `rank_after` is the result's rank among the returned results had the region been
    missing."""

    removal: str
    score_before: float
    score_after: float
    score_drop: float
    rank_after: int
    supported: bool
    threshold: float
    null_drops: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": "cosine",
            "score_before": round(self.score_before, 6),
            "score_after": round(self.score_after, 6),
            "score_drop": round(self.score_drop, 6),
            "rank_after": self.rank_after,
            "supported": self.supported,
            "removal": self.removal,
            "null": {
                "placements": len(self.null_drops),
                "drops": [round(d, 6) for d in self.null_drops],
                "threshold": round(self.threshold, 6),
            },
        }


@dataclass(frozen=True)
class _Drop:
    """A score before and after a region was taken out, and its drop (`score_drop ==
    score_before - score_after` exactly)."""

    score_before: float
    score_after: float

    @property
    def score_drop(self) -> float:
        return self.score_before - self.score_after

    def _scores(self, scale: str) -> dict[str, Any]:
        return {
            "scale": scale,
            "score_before": round(self.score_before, 6),
            "score_after": round(self.score_after, 6),
            "score_drop": round(self.score_drop, 6),
        }


@dataclass(frozen=True)
class WordsCheck(_Drop):
    """What happened to a result's lexical score (BM25 of the query against the words read
    in the image) when one region's words were taken out, against taking out each of up to
    eight other lines of the same image (the null)."""

    null_drops: tuple[float, ...] = ()

    @property
    def supported(self) -> bool:
        threshold = max(self.null_drops, default=0.0)
        return self.score_drop > 0 and self.score_drop > threshold

    def to_dict(self) -> dict[str, Any]:
        return self._scores("bm25") | {
            "null": {
                "lines": len(self.null_drops),
                "drops": [round(d, 6) for d in self.null_drops],
            },
            "supported": self.supported,
        }


@dataclass(frozen=True)
class ColourCheck(_Drop):
    """What happened to the share of an image's ink in the colours a query names when one
    region was painted over as paper (a share of the ink the image had), against the same
    box at other places in the image (the null): supported when the drop is positive and
    beats `threshold`, the null's 90th percentile (`tools.evidence.colour_regions`)."""

    threshold: float
    null_drops: tuple[float, ...] = ()

    @property
    def supported(self) -> bool:
        return self.score_drop > 0 and self.score_drop > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return self._scores("share of the image's ink in the named colours") | {
            "supported": self.supported,
            "null": {
                "placements": len(self.null_drops),
                "drops": [round(d, 6) for d in self.null_drops],
                "threshold": round(self.threshold, 6),
            },
        }


@dataclass(frozen=True)
class Region:
    """An evidence region: `box` is `(x0, y0, x1, y1)` in original-image pixels, x1/y1
    exclusive. `kind` is "heat" (a compact peak of the heatmap: `peak` its highest heat,
    `mass` its share of all heat), "text" (words read in the image that the query names:
    `text` holds them, `role` their place in the figure) or "colour" (where a colour the
    query names is drawn: `colour` names it; a heat region covering one names it too).
    `id` is `R<rank>.<n>`: `R1.1` is the first region of result 1; text and colour regions
    are numbered after the heat regions, except that the regions of a part the query names
    ("the title of ...") come first, then those of a colour it names.

    A region is `supported` when its counterfactual check passed: removing it lowers the
    image's cosine more than removing boxes of its size elsewhere does; for text, also when
    removing its words lowers the lexical score more than removing other lines does; for a
    colour, also when painting it over lowers the colour's share more than elsewhere."""

    id: str
    box: tuple[int, int, int, int]
    peak: float = 0.0
    mass: float = 0.0
    counterfactual: Counterfactual | None = None
    kind: str = "heat"
    text: str | None = None
    role: str | None = None
    words_check: WordsCheck | None = None
    colour: str | None = None
    colour_check: ColourCheck | None = None

    @property
    def supported(self) -> bool:
        image = self.counterfactual is not None and self.counterfactual.supported
        words = self.words_check is not None and self.words_check.supported
        colour = self.colour_check is not None and self.colour_check.supported
        return image or words or colour

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "box": list(self.box),
            "peak": round(self.peak, 4),
            "mass": round(self.mass, 4),
            "supported": self.supported,
        }
        if self.kind == "text" or self.text:
            out |= {"text": self.text, "role": self.role}
        if self.counterfactual is not None:
            out["counterfactual"] = self.counterfactual.to_dict()
        if self.words_check is not None:
            out["words_check"] = self.words_check.to_dict()
        if self.colour:
            out["colour"] = self.colour
        if self.colour_check is not None:
            out["colour_check"] = self.colour_check.to_dict()
        return out


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion curves of the score, pixels taken in heat order.

    `deletion[i]` is the score with the hottest `i/steps` of the pixels removed (lower area
    = the heat found what the score needs); `insertion[i]` the score of the removed image
    with the hottest `i/steps` put back (higher area is better). Areas use the trapezoid
    rule over the fraction in [0, 1], on raw cosines."""

    deletion_auc: float
    insertion_auc: float
    removal: str
    deletion: tuple[float, ...] = ()
    insertion: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "deletion_auc": round(self.deletion_auc, 6),
            "insertion_auc": round(self.insertion_auc, 6),
            "removal": self.removal,
        }


@dataclass(frozen=True)
class QueryTerm:
    """How much one word of the query added to a result's score (cosine units)."""

    term: str
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return {"term": self.term, "contribution": round(self.contribution, 6)}


@dataclass(frozen=True)
class Evidence:
    """Everything the engine checked for one hit; `to_dict()` is the per-result JSON."""

    hit_id: str
    rank: int
    method: str
    score: float
    regions: tuple[Region, ...] = ()
    query_terms: tuple[QueryTerm, ...] = ()
    faithfulness: Faithfulness | None = None
    png: str | None = None
    overlay: str | None = None

    @classmethod
    def empty(cls) -> Evidence:
        """What an unexplained result carries: no regions, no heatmap."""
        return cls(hit_id="", rank=0, method="", score=0.0)

    @property
    def supported_regions(self) -> tuple[Region, ...]:
        """The only regions an answer may cite as support."""
        return tuple(r for r in self.regions if r.supported)

    def to_dict(self) -> dict[str, Any]:
        heatmap = {"method": self.method, "png": self.png, "overlay": self.overlay}
        return {
            "heatmap": heatmap if self.method else None,
            "regions": [r.to_dict() for r in self.regions],
            "query_terms": [t.to_dict() for t in self.query_terms],
            "faithfulness": None if self.faithfulness is None else self.faithfulness.to_dict(),
        }


@dataclass(frozen=True)
class Explanation:
    """Evidence for some hits of a search, by hit id, with the hits that could not be
    explained (`errors`, a reason each) and the stage timings."""

    method: str | None
    evidence: Mapping[str, Evidence] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    timings_ms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryResult:
    """A search with the evidence for its top hits; `to_dict()` is `evident search --json`.

    Every result has the same keys: one that was not explained has empty `regions` and a
    null `heatmap`, and `evidence_error` says why when it could not be."""

    search: Any  # tools.retrieve.SearchResult (which holds these records)
    explanation: Explanation

    @property
    def hits(self) -> tuple[Hit, ...]:
        return self.search.hits

    def to_dict(self) -> dict[str, Any]:
        out = self.search.to_dict()
        ex = self.explanation
        out["results"] = [
            result_dict(h, ex.evidence.get(h.id), ex.errors.get(h.id)) for h in self.hits
        ]
        out["timings_ms"] = {
            k: round(v, 2) for k, v in {**self.search.timings_ms, **ex.timings_ms}.items()
        }
        return out


def result_dict(hit: Hit, evidence: Evidence | None, error: str | None = None) -> dict[str, Any]:
    """One result in the uniform schema every entry point prints."""
    out = hit.to_dict() | Evidence.empty().to_dict()
    if evidence is not None:
        out |= evidence.to_dict()
    out["evidence_error"] = error
    return out
