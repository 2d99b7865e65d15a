"""Hybrid scoring: how the signals of one search (`tools.retrieve`) become one score.

With one signal, `score` is that signal's raw cosine (`scoring: "cosine"`). With several,
each is min-max normalised over the union of the candidates (raw cosines of different
models live on different scales; BM25 has none), with a floor under each range (`FLOORS`:
0.1 for a cosine, 2 for BM25) so that a signal whose candidates all score alike — noise,
such as a random encoder's cosines — cannot be stretched into a strong one; `score` is the
weighted sum, the weights summing to 1 (`Weights`; the JSON's `fusion` gives each signal's
weight and range, every hit's `contributions` what each added). A candidate without a
caption or words scores 0 on that side.

The image signal's weight follows how well the model knows the query, when the model says
what that looks like (`specs.text_band`; the bundled figure model does): the cosine of
the query's best image against the band of best cosines the model reaches on its own
validation queries (their 1st and 5th percentiles). Below the band the image side counts
nothing (the query is outside what the model learnt, and its ranking is noise), above it
in full, linearly between (`confidence`; the JSON's `fusion.image` gives the best
cosine, the band and the confidence). The best cosine, not its distance from the
collection's mean: in a folder of line charts alone a line-chart query's best image does
not stand out from the rest, yet the model knows it. On the Debian documentation figures,
queried by what people wrote, the bundled model's image side ranks at chance (1.2x) and
drowned the words; on the figure benchmark the gate changes no retrieval metric (README).
The words' embedding half is gated the same way, on the best MiniLM cosine between the
query and any image's words (`WORDS_BAND`): a query whose words resemble no figure's
("a line chart with a red dashed line" against titles and tick labels) gets noise from
it, which min-max scaling would stretch to full range (figure benchmark, attribute
precision@5 0.159 -> 0.197; the documentation figures and caption queries unchanged).
The lexical half follows both gates: it counts `1 - image x (1 - words)` of itself (a
model without a band, whose knowledge of the query is unknown, counts as image 0). When
the model knows the query (image gate open) and its words resemble nothing read in the
images (words gate shut), an exact word they share is incidental: "line" of "a line chart
with a green dashed line" matches the few figures where OCR read a "line" (misreadings,
mostly), "5" of "a bar chart with 5 bars" a tick label (figure benchmark: attribute
precision@5 0.202 -> 0.218, caption recall@5 0.978 -> 0.976).
When the model does not know the query, the exact words are the evidence that is left,
even where the sentence as a whole resembles none of them: gating the lexical half by the
words gate alone cost the documentation figures' words row a tenth of its recall (20.0x
-> 18.3x chance); this way it is unchanged.

Not handled: learned fusions (`tools.fusion` reranks with one after this first stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evident.tools.colours import CHROMATIC, PART_SHARE

FLOORS = {
    "image": 0.1, "caption": 0.1, "embedding": 0.1, "lexical": 2.0, "colour": 1.0, "marks": 1.0,
    "printed": 1.0,
}  # fmt: skip
"""The floor under each column's range; the colour, marks and printed columns (a log
share, a probability, a share of what was asked) are floored at 1, so a column whose
candidates differ little stays small."""
SPECK = 0.005
"""Colour column: `log(1 + share / SPECK)` of the ink in the named colours, so half a
percent of the ink (a line, a few markers) already counts and a whole-figure colour does
not drown every other signal."""
WORDS_BAND = (0.4, 0.5)
"""all-MiniLM-L6-v2 cosines of a query with an image's words: below 0.4 they resemble
nothing there (the best cosine of the figure benchmark's attribute queries is 0.24-0.33,
of its caption queries, which name titles, 0.55-0.76); set by hand, and any band from
(0.3, 0.4) to (0.45, 0.51) gives the same results within 0.005 on both benchmarks."""
NEAR = (0.2, 0.35)
"""What indexing read (colours, marks, printed words) counts for a candidate in full while
its image cosine is within `NEAR[0]` of the query's best, nothing beyond `NEAR[1]`,
linearly between, as far as the model knows the query (the image gate). A query names a
kind of figure and a detail of it ("a scatter plot with a grey arrow annotation"); summed,
a detail read with certainty lifted figures of another kind (a line chart with a grey
arrow, its image cosine 0.4 below the best) above the scatter plots asked for. Figure
benchmark, validation split, the best image cosine less a candidate's: relevant figures
0.21 at the 99th percentile, figures of another kind 0.25 at the 5th; attribute capped
precision@5 0.934 -> 0.945 with any band from (0.2, 0.3) to (0.25, 0.4), 0.941 at
(0.15, 0.25) and (0.3, 0.5). Cosines of the bundled model: with a model that has no band
the image gate is unknown and nothing is gated."""
READ = ("colour", "marks", "printed")  # the signals indexing read, counted when a query asks


@dataclass(frozen=True)
class Weights:
    """How much each signal counts in a hybrid score (renormalised over the signals a
    query has), and the share of the words signal that is lexical. Beside captions the
    words count `words_beside_captions`: what people wrote about a figure says what it
    shows better than the labels and ticks read in it (on the Debian documentation
    figures with their pages' text, recall@10 0.68 with the words at 0.5, 0.78 at 0.15,
    against 0.78 for the pages' text alone). The marks count `marks` (figure benchmark,
    validation split, capped precision@5 of its attribute queries: 0.568 at 0, 0.766 at
    0.2, 0.780 at 0.4, 0.783 at 0.6 with the first marks reader; with today's, read twice,
    on the 256 that name a mark 0.910 at 0.3, 0.918 at 0.4, 0.926 at 0.6, 0.927 at 0.8,
    0.923 at 1.0, and on all 399 0.927 at 0.4, 0.932 at 0.6; once the marks count only on
    figures of the kind asked for (`NEAR`), on all 399 0.945 at 0.6, 0.948 at 0.8, 0.951
    at 1.0, 0.954 at 1.5, 0.953 at 2 and 3; but the 500 caption queries, which name
    several series' marks at once, recall@5 0.996 at 0.6, 0.992 at 1.0, 0.984 at 1.5:
    1.0 was kept, the best of the three over both; read from four views and with the
    pulled-out slices, all 399 0.957 at 0.6, 0.962 at 0.8 and 1.0, 0.965 at 1.2 and 1.5,
    captions 0.998 at 0.6, 0.996 at 1.0 and 1.2: 1.2 is kept)."""

    image: float = 0.5
    caption: float = 0.5
    words: float = 0.5
    lexical: float = 0.5
    words_beside_captions: float = 0.15
    colour: float = 0.2
    marks: float = 1.2
    printed: float = 0.4


def confidence(best: float, band: tuple[float, float]) -> dict[str, Any]:
    """How much a signal counts for a query whose best candidate has cosine `best`, given
    the band of best cosines its in-domain queries reach (see the module's docstring).

    >>> confidence(0.30, (0.47, 0.51))["confidence"], confidence(0.49, (0.47, 0.51))
    (0.0, {'best': 0.49, 'band': [0.47, 0.51], 'confidence': 0.5})
    """
    low, high = band
    share = float(np.clip((best - low) / max(high - low, 1e-9), 0.0, 1.0))
    return {"best": round(best, 4), "band": [low, high], "confidence": round(share, 4)}


def fuse(ids: list[str], raw: dict, w: Weights, gates: dict):
    """`(fused scores, per-candidate contributions, the fusion record)`; `gates` holds a
    `confidence` for the image signal (scaling its weight) and for the words' embedding
    (scaling its column, and with the image's the lexical column), where they apply."""
    # how well the model knows the query; None without a band: the image side then counts
    # in full, and the exact words too (nothing says the model sees what the query asks)
    known = gates["image"]["confidence"] if "image" in gates else None
    signals = {"image": w.image * (1.0 if known is None else known)}
    if "caption" in raw:
        signals["caption"] = w.caption
    if "embedding" in raw:
        signals["words"] = w.words_beside_captions if "caption" in raw else w.words
    for name in READ:
        if name in raw:
            signals[name] = getattr(w, name)
    total = sum(signals.values()) or 1.0
    columns = {
        "image": minmax([raw["image"].get(i, np.nan) for i in ids], FLOORS["image"]),
        "caption": minmax([raw.get("caption", {}).get(i, np.nan) for i in ids], FLOORS["caption"]),
    }
    lexical_gate = 1.0
    if "words" in signals:
        lex = minmax([raw["lexical"].get(i, 0.0) for i in ids], FLOORS["lexical"])
        emb = minmax([raw["embedding"].get(i, np.nan) for i in ids], FLOORS["embedding"])
        if "embedding" in gates:
            emb = emb * gates["embedding"]["confidence"]
            lexical_gate = 1 - (known or 0.0) * (1 - gates["embedding"]["confidence"])
        columns["words"] = w.lexical * lexical_gate * lex + (1 - w.lexical) * emb
    if "colour" in signals:
        inked = np.array([raw["colour"].get(i, np.nan) for i in ids])
        columns["colour"] = minmax(np.log1p(inked / SPECK).tolist(), FLOORS["colour"])
    for name in ("marks", "printed"):  # a probability, a share: scaled as they are
        if name in signals:
            columns[name] = minmax([raw[name].get(i, np.nan) for i in ids], FLOORS[name])
    gated = [name for name in READ if name in signals] if known else []
    if gated:  # a detail counts on figures of the kind the query asks for (`NEAR`)
        near = nearness([raw["image"].get(i, np.nan) for i in ids])
        for name in gated:
            columns[name] = columns[name] * (1 - known * (1 - near))
    fused = np.zeros(len(ids))
    parts = [{} for _ in ids]
    for name, weight in signals.items():
        share = weight / total * columns[name]
        fused += share
        for j, v in enumerate(share):
            parts[j][name] = round(float(v), 6)
    fusion = {
        name: {"weight": round(weight / total, 4)} | _range(raw, name)
        for name, weight in signals.items()
    }
    for name in gated:
        fusion[name]["near"] = list(NEAR)
    if "words" in signals:
        fusion["words"]["lexical_share"] = w.lexical
        fusion["words"]["lexical_gate"] = round(lexical_gate, 4)
    if "image" in gates:
        fusion["image"] |= gates["image"]
    if "words" in fusion and "embedding" in gates:
        fusion["words"]["embedding"] = gates["embedding"]
    return fused, parts, fusion


def colour_scores(
    names: tuple[str, ...],
    shares: dict[str, dict | None],
    fills: dict[str, dict | None] | None = None,
    parts: tuple[str, ...] = (),
    lone: tuple[str, ...] = (),
) -> dict[str, float]:
    """Per image indexed with colours, the mean share of its ink in the named colours. A
    colour named for small parts (`parts`, `colours.part_colours`: "red median lines")
    counts as such: its share up to `colours.PART_SHARE`'s first bound, nothing above the
    second, nor where it fills areas (a fifth of its ink or more in `fills`; filled boxes
    hold 35-77% of theirs in solid blocks, lines none). Black and grey small parts are
    another matter: every chart's words and axes are drawn in them, so their share says
    nothing of its parts. For the parts a chart draws in one colour (`lone`,
    `colours.ONE_COLOUR`: "black median lines") what says so is that no colour with a hue
    is drawn as small parts (`hue_parts`): a box plot's median lines in a hue hold 0.9-9%
    of its ink, and 23 of the validation and test splits' 32 box plots with black median
    lines have no hue under 10% of the ink outside fills.

    >>> shares = {"a": {"red": 0.30}, "b": {"red": 0.03}, "c": {"red": 0.20}, "d": {"red": 0.06}}
    >>> fills = {"a": {"red": 0.15}, "b": {}, "c": {}, "d": {"red": 0.02}}
    >>> colour_scores(("red",), shares, fills, parts=("red",))
    {'a': 0.0, 'b': 0.02, 'c': 0.0, 'd': 0.0}
    >>> on_paper = shares | {"e": {"black": 0.3}}
    >>> colour_scores(("black",), on_paper, fills, parts=("black",), lone=("black",))
    {'a': 0.02, 'b': 0.0, 'c': 0.02, 'd': 0.02, 'e': 0.02}
    """
    out = {}
    for i, s in shares.items():
        if s is None:
            continue
        filled = (fills or {}).get(i) or {}
        got = []
        for n in names:
            share = s.get(n, 0.0)
            if n in lone and n not in CHROMATIC:
                share = PART_SHARE[0] * max(0.0, 1.0 - hue_parts(s, filled) / HUE_PART)
            elif n in parts:
                share = min(share, PART_SHARE[0]) if _small(share, filled.get(n, 0.0)) else 0.0
            got.append(share)
        out[i] = float(np.mean(got))
    return out


HUE_PART = 0.01
"""A colour with a hue holding this share of the ink, outside fills and under
`colours.PART_SHARE`'s upper bound, is drawn as small parts (`colour_scores`)."""


def hue_parts(shares: dict[str, float], fills: dict[str, float]) -> float:
    """The largest share of the ink a colour with a hue holds as small parts: at most
    `colours.PART_SHARE`'s upper bound, and under a fifth of it in fills (a box plot's
    median lines in a hue; not its outlined boxes, 16-38% of the ink, nor filled ones).

    >>> hue_parts({"red": 0.03, "blue": 0.3, "black": 0.05, "green": 0.04}, {"green": 0.03})
    0.03
    """
    small = [v for n, v in shares.items() if n in CHROMATIC and _small(v, fills.get(n, 0.0))]
    return max(small, default=0.0)


def _small(share: float, filled: float) -> bool:
    return share <= PART_SHARE[1] and filled < share / 5


def nearness(cosines: list[float]) -> np.ndarray:
    """Per candidate, 1 while its image cosine is within `NEAR[0]` of the best, 0 beyond
    `NEAR[1]` (and without one), linearly between."""
    values = np.array(cosines, dtype=float)
    below = np.nanmax(values) - values
    near = np.clip((NEAR[1] - below) / (NEAR[1] - NEAR[0]), 0.0, 1.0)
    return np.nan_to_num(near, nan=0.0)


def _range(raw: dict, name: str) -> dict:
    """The raw range a signal was normalised over (image and caption: cosines)."""
    values = [v for v in raw.get(name, {}).values() if np.isfinite(v)]
    return (
        {"range": [round(min(values), 6), round(max(values), 6)]}
        if values and name != "words"
        else {}
    )


def minmax(values: list[float], floor: float = 0.0) -> np.ndarray:
    """Scale to [0, 1] by the range, or by `floor` when the range is smaller (then the top
    stays below 1); missing values (NaN) become 0, a constant column becomes 1.

    >>> minmax([0.2, 0.4, float("nan")]).tolist()
    [0.0, 1.0, 0.0]
    >>> minmax([0.30, 0.32], floor=0.1).round(2).tolist()
    [0.0, 0.2]
    """
    a = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(a)
    out = np.zeros_like(a)
    if ok.any():
        lo, hi = a[ok].min(), a[ok].max()
        out[ok] = (a[ok] - lo) / max(hi - lo, floor) if hi > lo else 1.0
    return out
