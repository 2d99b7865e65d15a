"""What the words printed in a chart show about how it is drawn — a logarithmic axis,
percentage labels — read from its words at indexing time and asked for by a query ("a
line chart with a logarithmic x axis", "a log-log plot", "a pie chart with percentage
labels"): a signal `tools.hybrid` weighs beside the model, as it does the marks. The
figure model sees a figure 192 pixels a side, where "10²" and "23%" are specks.

`FEATURES`:
- "log-x", "log-y": an axis labelled in powers of ten. OCR (`tools.ingest.ocr`) reads
  them as "10²", "10°", "10*", "10+", "2×10¹" (`POWER`: one such label settles the axis) or,
  dropping the superscript, as "101", "10-1" or "10" (`BARE`: two of them on one axis,
  and more of them than of the other numbers there, since a linear axis never labels the
  same "10" twice). Which axis a label belongs to comes from the tick labels beside it: a
  row of them is the x axis, a right-aligned column the y axis, else the nearer of the
  bottom and left edges. A query that names no axis ("on a log scale") asks for either
  (`LOG_ANY`).
- "percent": a number with a percent sign printed in the chart, other than a row or a
  column of three or more (an axis's tick labels) and a power of ten whose superscript
  OCR read as one ("4×10%").
Each is found, known absent (an axis labelled by two or more plain numbers; numbers read
and none with a percent sign) or unknown (OCR read too little to tell), and scores 1, 0
or `UNKNOWN`: a pie whose small labels OCR missed on dark slices is not put under every
pie without labels (on the benchmark's test split, 6 caption queries lost their figure
when an unknown scored 0).

On the figure benchmark's test split (1,000 figures, with the readings `evident index
--ocr on` makes) this finds 34 of 38 logarithmic x axes and 47 of 66 y axes (of the
rest, 19 unknown, 4 called linear) and the percentage labels of 50 of 54 pie charts that
have them (4 unknown). Of the single-panel figures drawn without them, it calls one x
axis and one y axis logarithmic and finds percentages in none; it also calls axes
logarithmic in 22 multi-panel figures, whose panels may be (the generator records a
panel's scales in its caption only: 24 of them name a logarithmic axis).

Not handled: logarithmic axes labelled with plain numbers (1, 10, 100, 1000), natural or
base-2 logarithms, symlog axes, which panel of a multi-panel figure is meant, and
negation ("without percentages").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from evident.tools.ingest.layout import TextLine, is_numberish, same_right_edge, same_row

FEATURES = ("log-x", "log-y", "percent")
LOG_ANY = "log-any"  # asked for by "on a log scale": either axis
SAYS = {
    "log-x": "a logarithmic x axis", "log-y": "a logarithmic y axis",
    LOG_ANY: "a logarithmic axis", "percent": "percentage labels",
}  # fmt: skip
"""How the answer, the CLI and the LLM name what was weighed."""

POWER = re.compile(
    r"^(?:\d(?:\.\d)?\s*[×xX]\s*)?10\s*(?:\^?\s*[-−⁻]?\s*[⁰¹²³⁴⁵⁶⁷⁸⁹]+|[°*=+§]+|\^\s*[-−]?\d)$"
    r"|^\d(?:\.\d)?\s*[×xX]\s*10"
)
"""A power of ten as OCR reads one: a superscript read as such, as a symbol or after a
caret, or a multiple of one ("2×10¹")."""
BARE = re.compile(r"^10(?:[1-9]|[-−]\d)?$")
"""A power of ten whose superscript OCR read as a plain digit or dropped."""
PERCENT = re.compile(r"\d\s*%")
_DIGIT = re.compile(r"\d")
UNKNOWN = 0.5
"""The score of a feature the words can neither show nor rule out (OCR read too little):
a pie whose small labels OCR missed is not ranked under every pie without labels."""

_LOG = r"(?:log(?:arithmic(?:ally)?)?(?:[- ]scaled?)?|log[- ]?scale)"
_AXIS = r"(?P<axis>[xy])[- ]?ax(?:is|es)"
_NAMED = (
    re.compile(rf"\b{_LOG}\s+{_AXIS}", re.IGNORECASE),  # "a logarithmic x axis"
    re.compile(rf"\b{_AXIS}\s+(?:is\s+|on\s+an?\s+|in\s+)?{_LOG}", re.IGNORECASE),  # "y axis log"
    re.compile(rf"\b{_LOG}\s+(?:on|for|along)\s+the\s+{_AXIS}", re.IGNORECASE),
)
_BOTH = re.compile(rf"\blog[- ]log\b|\b{_LOG}\s+(?:x\s+and\s+y\s+)?axes\b", re.IGNORECASE)
_EITHER = re.compile(
    rf"\b(?:semi-?log|{_LOG}\s+(?:axis|plot|chart|scale))\b|\bon\s+an?\s+{_LOG}\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(
    r"\b(?:percent(?:age)?s?|%)\s+(?:labels?|values?)\b|\blabell?ed\s+(?:with|in)\s+percent",
    re.IGNORECASE,
)


def named(text: str) -> tuple[str, ...]:
    """What a query asks the printed words to show (`FEATURES`, or `LOG_ANY`).

    >>> named("a line chart with a logarithmic x axis"), named("a log-log plot")
    (('log-x',), ('log-x', 'log-y'))
    >>> named("a histogram whose y-axis is log scaled"), named("counts on a log scale")
    (('log-y',), ('log-any',))
    >>> named("a bar chart with a log scale on the y axis"), named("a blog chart")
    (('log-y',), ())
    >>> named("a scatter plot with logarithmic axes"), named("a pie chart with percentage labels")
    (('log-x', 'log-y'), ('percent',))
    """
    axes = {m.group("axis").lower() for pattern in _NAMED for m in pattern.finditer(text)}
    if _BOTH.search(text):
        axes |= {"x", "y"}
    found = [f"log-{a}" for a in sorted(axes)]
    if not axes and _EITHER.search(text):
        found.append(LOG_ANY)
    if _PERCENT.search(text):
        found.append("percent")
    return tuple(found)


def read(lines: Sequence[TextLine], size: tuple[int, int]) -> tuple[str, ...]:
    """What a figure's words (`lines`, with their layout roles) show (see the module's
    notes): each of `FEATURES` found, or known absent ("-log-x": two or more plain
    numbers label the x axis; "-percent": numbers were read on their own, none with a
    percent sign);
    one neither found nor known absent is unknown (OCR read too little to tell).

    >>> def at(text, x, y):
    ...     return TextLine(text, (x, y, x + 20, y + 12), 0.9, "tick")
    >>> y_log = [at("10⁰", 20, 250), at("10¹", 20, 150), at("10²", 20, 50)]
    >>> x_lin = [at("0", 60, 280), at("50", 160, 280), at("100", 260, 280)]
    >>> read(y_log + x_lin, (320, 300)), read(x_lin, (320, 300))
    (('-log-x', 'log-y', '-percent'), ('-log-x', '-percent'))
    >>> read([at("10", 20, 250), at("10", 20, 150), at("10", 20, 50)] + x_lin, (320, 300))
    ('-log-x', 'log-y', '-percent')
    >>> slices = [at("23%", 100, 100), at("41%", 180, 160), at("36%", 120, 200)]
    >>> read(slices, (320, 300)), read([at(f"{v}%", 20, y) for v, y in ((0, 250), (50, 150),
    ...                                  (100, 50))], (320, 300)), read([], (320, 300))
    (('percent',), ('-log-y', '-percent'), ())
    """
    found = _log_axes(lines, size)
    percent = _percent(lines)
    if percent is not None:
        found.append("percent" if percent else "-percent")
    return tuple(found)


def _log_axes(lines: Sequence[TextLine], size: tuple[int, int]) -> list[str]:
    ticks = [x for x in lines if x.role == "tick" and len(x.text.strip()) > 1]
    power: Counter[str] = Counter()
    bare: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for line in lines:
        text = line.text.strip()
        strong, weak = POWER.match(text), BARE.match(text)
        if not (strong or weak or line in ticks):
            continue
        axis = _axis(line, ticks, size)
        if axis is not None:
            (power if strong else bare if weak else other)[axis] += 1
    out = []
    for a in "xy":
        if power[a] or bare[a] >= 2 and bare[a] > other[a]:
            out.append(f"log-{a}")
        elif other[a] >= 2:
            out.append(f"-log-{a}")
    return out


def _axis(line: TextLine, ticks: list[TextLine], size: tuple[int, int]) -> str | None:
    """Which axis a tick label labels: "x" in a row of them, "y" in a right-aligned
    column, else by the nearer of the bottom and left edges (None far from both)."""
    row = any(t is not line and same_row(t.box, line.box) for t in ticks)
    column = any(
        t is not line and same_right_edge(t.box, line.box) and not same_row(t.box, line.box)
        for t in ticks
    )
    if row != column:
        return "x" if row else "y"
    x0, y0, x1, y1 = line.box
    left, bottom = (x0 + x1) / 2 / size[0], 1 - (y0 + y1) / 2 / size[1]
    if min(left, bottom) > 0.3:
        return None
    return "y" if left < bottom else "x"


def _percent(lines: Sequence[TextLine]) -> bool | None:
    """Whether a number with a percent sign is printed other than as tick labels; None
    where no number was read on its own (a title's "Trial 218" does not count)."""
    boxes = [x.box for x in lines if PERCENT.search(x.text) and not POWER.search(x.text)]
    axis = len(boxes) >= 3 and (
        all(same_row(boxes[0], b) for b in boxes)
        or all(same_right_edge(boxes[0], b) for b in boxes)
    )
    if boxes and not axis:
        return True
    numbers = any(is_numberish(x.text) and _DIGIT.search(x.text) for x in lines)
    return False if numbers else None


def encode(found: Sequence[str]) -> str:
    """How an image's printed features are kept in its metadata: "-log-x,log-y,-percent"."""
    return ",".join(found)


def scores(wanted: tuple[str, ...], stored: dict[str, str | None]) -> dict[str, float]:
    """Per image whose words were read, the mean over `wanted` of 1 where its words show
    it, 0 where they show it is absent, `UNKNOWN` where they cannot tell (`LOG_ANY`:
    either axis; absent when both are).

    >>> scores(("log-x",), {"a": "log-x,log-y", "b": "-log-x,log-y", "c": "", "d": None})
    {'a': 1.0, 'b': 0.0, 'c': 0.5}
    >>> scores((LOG_ANY, "percent"), {"b": "-log-x,log-y,-percent", "e": "-log-x,-log-y"})
    {'b': 0.5, 'e': 0.25}
    """
    out = {}
    for i, found in stored.items():
        if found is None:
            continue
        have = set(found.split(","))
        out[i] = float(np.mean([_score(w, have) for w in wanted]))
    return out


def _score(wanted: str, have: set[str]) -> float:
    if wanted == LOG_ANY:
        if have & {"log-x", "log-y"}:
            return 1.0
        return 0.0 if {"-log-x", "-log-y"} <= have else UNKNOWN
    return 1.0 if wanted in have else 0.0 if f"-{wanted}" in have else UNKNOWN
