"""The grounding contract, enforced in code on every answer before anyone reads it.

A citation is any region id `R<rank>.<n>` in the text (`[R1.2]`, `[R1.1, R2.1]` or bare).
Results are mentioned as `#2` or `result 2`. The rules, sentence by sentence:

- `missing`: a cited id is not a region of an explained result of the latest search;
- `unsupported`: a cited region failed its counterfactual check (removing it did not
  lower the score), so it is no support for anything;
- `mismatch`: a sentence about some results cites only regions of other results;
- `uncited`: a result the answer discusses has supported regions but none is cited
  anywhere (every uncited sentence about it is flagged), or it has none and a sentence
  about it does not say so (`DECLARES_ABSENCE`: "no supported region", "not explained", ...);
- `misquote`: a sentence quotes words ("reads 'circmean'") that are not in the text of any
  region it cites: what an image says must be what was read there.

The graph gives the writer one repair round with the problems; whatever still fails is
removed by `remove_failing` and reported in `grounding["removed"]`.
Before any check, `clean_draft` takes markup off a model's draft: fence markers and the
data they delimit, chat control tokens, tool-call tags and JSON, code fences, HTML tags,
a citation cut off mid-way. None of it may reach an answer, or the conversation history
that the next turn's prompt is made from.

Not handled: claims a sentence makes beyond its citations (a cited sentence may still
overstate what the region shows), pronouns ("it", "the second one") as mentions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["missing", "unsupported", "mismatch", "uncited", "misquote"]

CITATION = re.compile(r"\bR(\d+)\.(\d+)\b")
MENTION = re.compile(r"#\s*(\d+)\b|\bresults?\s+#?(\d+)\b", re.I)
DECLARES_ABSENCE = re.compile(
    r"\bno (?:supported |checked )?(?:region|evidence)|\bnot explained|\bcite(?:s|d)? "
    r"(?:nothing|no evidence)|\bnothing (?:is )?cited|\bcould not|\bfailed|\bthere is no result",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
QUOTE = re.compile(r"[\"“”]([^\"“”]{2,200})[\"“”]|(?<![A-Za-z])'([^'\n]{2,200})'(?![A-Za-z])")
_MARKUP = [  # (pattern, replacement), applied in order
    (re.compile(r"(?:<<<|‹‹‹)data [^\n]*?(?:>>>|›››).*?(?:<<<|‹‹‹)end data(?:>>>|›››)", re.S), " "),
    (re.compile(r"(?:<<<|‹‹‹)\s*(?:end )?data\b[^\n]*?(?:>>>|›››)"), " "),
    (re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.S), " "),
    (re.compile(r"[<‹]\|[^|\n]{0,40}\|[>›]"), " "),
    (re.compile(r"</?[A-Za-z_][\w:-]*(?:\s[^<>\n]{0,200})?/?>"), " "),
    (re.compile(r"```[\w-]*"), " "),
    (re.compile(r"\[\s*R\d*(?:\.\d*)?\s*$"), ""),  # a citation cut off at the end
    (re.compile(r"<<<|>>>|‹‹‹|›››"), " "),
]


@dataclass(frozen=True)
class Problem:
    kind: Kind
    sentence: int  # index into `Check.sentences`
    why: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "sentence": self.sentence, "why": self.why}


@dataclass(frozen=True)
class Check:
    sentences: tuple[str, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def clean_draft(text: str) -> str:
    r"""A model's draft without markup (see the module docstring), spaces tidied.

    >>> clean_draft("<<<data draft_answer>>>\nold text\n<<<end data>>>")
    ''
    >>> clean_draft('#1 is red [R1.1]. <|im_end|>{"name": "answer"}\n<b>ok</b> [R1.')
    '#1 is red [R1.1].\nok'
    """
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    text = _drop_json(text)
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line).strip()


def _drop_json(text: str) -> str:
    """`text` without JSON objects (`{"...` to its closing brace, or to the end): a tool
    call or data written where prose belongs."""
    out, i = [], 0
    for m in re.finditer(r'\{\s*"', text):
        if m.start() < i:
            continue
        depth, j, quoted = 0, m.start(), False
        while j < len(text):
            c = text[j]
            if quoted:
                quoted = not (c == '"' and text[j - 1] != "\\")
            elif c == '"':
                quoted = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        out.append(text[i : m.start()])
        i = j + 1
    return "".join(out) + text[i:]


def split_sentences(text: str) -> list[str]:
    """Sentences, split after `.`, `!` or `?` followed by space (so `0.31` stays whole).

    >>> split_sentences("#1 scores 0.31 [R1.1]. #2 was not explained.")
    ['#1 scores 0.31 [R1.1].', '#2 was not explained.']
    """
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def cited_ids(text: str) -> list[str]:
    """Region ids in order of first citation.

    >>> cited_ids("a [R1.1, R2.3] b R1.1")
    ['R1.1', 'R2.3']
    """
    return list(dict.fromkeys(f"R{a}.{b}" for a, b in CITATION.findall(text)))


def mentioned(sentence: str) -> set[int]:
    """The ranks a sentence mentions.

    >>> sorted(mentioned("#2 ranks below result 1"))
    [1, 2]
    """
    return {int(a or b) for a, b in MENTION.findall(sentence)}


def regions_of(evidence: dict[int, dict]) -> dict[str, dict]:
    """Every region of the explained results, by id."""
    return {r["id"]: r for ev in evidence.values() for r in ev["regions"]}


def is_supported(region: dict | None) -> bool:
    if not region:
        return False
    if "supported" in region:  # a region's verdict (text regions have two checks)
        return bool(region["supported"])
    return bool((region.get("counterfactual") or {}).get("supported"))


def quotes(sentence: str) -> list[str]:
    """The quoted strings of a sentence that claim what an image says: those after a verb
    of reading ("reads", "says", "labelled", "titled", "written") in the same clause, and
    the ones listed right after them ("reads “a” and “b”"). A quoted query word ("the
    query word 'bar' added most") claims nothing about the image.

    >>> quotes("#1 reads “circmean” and 'mean' [R1.2]; it's clear.")
    ['circmean', 'mean']
    >>> quotes("R1.1 holds 40% of the heat; the query words 'bar' and 'legend' added most.")
    []
    """
    out, claiming, end = [], False, 0
    for m in QUOTE.finditer(sentence):
        between = sentence[end : m.start()]
        if READING.search(between):
            claiming = True
        elif between.strip(" ,") not in ("", "and", "or"):
            claiming = False
        if claiming:
            out.append(m.group(1) or m.group(2))
        end = m.end()
    return out


READING = re.compile(r"\b(reads?|says?|labell?ed|titled|written)\b", re.I)


def _said(quote: str, text: str) -> bool:
    """Whether `quote` is in `text`, ignoring case, spacing and punctuation around words."""

    def norm(t: str) -> str:
        return " ".join(re.findall(r"\w+", t.lower()))

    return norm(quote) in norm(text) if norm(quote) else True


def check(text: str, evidence: dict[int, dict]) -> Check:
    """Check `text` against the evidence of the latest search (rank -> evidence artifact)."""
    sentences = tuple(split_sentences(text))
    regions = regions_of(evidence)
    problems: list[Problem] = []
    for i, s in enumerate(sentences):
        ids = cited_ids(s)
        for rid in ids:
            if rid not in regions:
                problems.append(Problem("missing", i, f"{rid} is not a region of any result"))
            elif not is_supported(regions[rid]):
                problems.append(Problem("unsupported", i, f"{rid} failed its counterfactual check"))
        read = " | ".join(regions[r].get("text") or "" for r in ids if r in regions)
        for q in quotes(s):
            if ids and read and not _said(q, read):
                problems.append(Problem("misquote", i, f"{q!r} is not what {', '.join(ids)} reads"))
            elif ids and not read:
                problems.append(Problem("misquote", i, f"{', '.join(ids)} has no words read in it"))
        about, owners = mentioned(s), {_owner(r) for r in ids}
        if about and ids and not about & owners and all(r in regions for r in ids):
            problems.append(Problem("mismatch", i, f"cites {', '.join(ids)} for #{min(about)}"))
    problems += _uncited(sentences, evidence)
    return Check(sentences, tuple(problems))


def _uncited(sentences, evidence) -> list[Problem]:
    out = []
    cited_ranks = {_owner(rid) for s in sentences for rid in cited_ids(s)}
    for rank in sorted({r for s in sentences for r in mentioned(s)}):
        has_support = any(is_supported(r) for r in evidence.get(rank, {}).get("regions", ()))
        for i, s in enumerate(sentences):
            if rank not in mentioned(s) or rank in {_owner(rid) for rid in cited_ids(s)}:
                continue
            if has_support and rank not in cited_ranks:
                why = f"#{rank} is discussed but none of its supported regions is cited"
            elif not has_support and not DECLARES_ABSENCE.search(s):
                why = f"#{rank} has no supported region, and the sentence does not say so"
            else:
                continue
            out.append(Problem("uncited", i, why))
    return out


def _owner(region_id: str) -> int:
    """The rank a region id belongs to.

    >>> _owner("R12.3")
    12
    """
    return int(region_id[1:].split(".")[0])


def remove_failing(result: Check) -> tuple[str, list[dict]]:
    """The text without the sentences that failed, and what was removed and why."""
    failing: dict[int, list[str]] = {}
    for p in result.problems:
        failing.setdefault(p.sentence, []).append(p.why)
    kept = [s for i, s in enumerate(result.sentences) if i not in failing]
    removed = [{"sentence": result.sentences[i], "why": why} for i, why in sorted(failing.items())]
    return " ".join(kept), removed


def grounding(text: str, evidence: dict[int, dict], removed: list[dict]) -> dict:
    """The figures shown with every answer: `sentences` in it; distinct ids `cited`, of
    them `valid` (they exist) and `supported` (counterfactual passed); `removed`."""
    regions, ids = regions_of(evidence), cited_ids(text)
    return {
        "sentences": len(split_sentences(text)),
        "cited": len(ids),
        "valid": sum(r in regions for r in ids),
        "supported": sum(is_supported(regions.get(r)) for r in ids),
        "removed": removed,
    }


def citations(text: str, evidence: dict[int, dict]) -> list[dict]:
    """What each cited id points at, for displays: rank, box, check figures, overlay."""
    out = []
    for rid in cited_ids(text):
        rank = _owner(rid)
        region = regions_of(evidence).get(rid)
        if region is None:
            continue
        cf = region.get("counterfactual") or {}
        out.append({
            "id": rid, "rank": rank, "box": region["box"], "supported": is_supported(region),
            "score_drop": cf.get("score_drop"), "rank_after": cf.get("rank_after"),
            "overlay": (evidence[rank].get("heatmap") or {}).get("overlay"),
        })  # fmt: skip
    return out
