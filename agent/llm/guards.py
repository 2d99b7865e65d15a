"""Limits every backend applies while a model writes: a token budget per call, a deadline,
and a guard against a model that repeats itself.

A small model that loses its way rarely stops: it writes "[R1.1] [R1.2] [R1.3] ..." or
the same JSON object line after line until the token budget runs out. `repeating` spots
a reply whose tail is one short piece said again and again (digits count as one, so a
counting loop is caught too); generation stops there and the repeats are cut off.

    >>> repeating("The answer is [R1.1] [R1.2] [R1.3] [R1.4] [R1.5] [R1.6] [R1.7] [R1.8]")
    True
    >>> repeating("#1 is a bar chart [R1.1]. #2 is a line chart [R2.1].")
    False
    >>> cut_repeats("ok. ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab")
    'ok. ab'
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

MIN_PERIOD, MAX_PERIOD = 2, 120  # characters in the repeated piece
MIN_REPEATED = 40  # characters of repetition before it counts
MIN_TIMES = 3  # the piece said at least this often in a row, word for word
MIN_TIMES_COUNTING = 6  # ... or with only its numbers changing ("[R1.1] [R1.2] ...")
_DIGITS = re.compile(r"\d+")


def _shape(text: str) -> str:
    return _DIGITS.sub("0", text)


def _period(text: str) -> int | None:
    """The shortest piece the tail of `text` repeats, if it repeats enough: word for word
    `MIN_TIMES`, or with its numbers changing `MIN_TIMES_COUNTING` times."""
    tail = text[-(MAX_PERIOD * MIN_TIMES_COUNTING + MIN_REPEATED) :]
    for shaped, needed in ((tail, MIN_TIMES), (_shape(tail), MIN_TIMES_COUNTING)):
        for p in range(MIN_PERIOD, min(MAX_PERIOD, len(shaped) // needed) + 1):
            piece = shaped[-p:]
            times = 1
            while shaped[: len(shaped) - times * p].endswith(piece):
                times += 1
            if times >= needed and times * p >= MIN_REPEATED:
                return p
    return None


def repeating(text: str) -> bool:
    """Whether `text` ends in a loop (see the module docstring)."""
    return _period(text.rstrip()) is not None


def cut_repeats(text: str) -> str:
    """`text` with a looping tail cut down to its first round."""
    text = text.rstrip()
    p = _period(text)
    if p is None:
        return text
    shaped = _shape(text)
    end = len(shaped)
    while end - p >= 0 and shaped[end - p : end] == shaped[-p:]:
        end -= p
    return text[: end + p].rstrip()


@dataclass
class Limits:
    """When one call must stop: `max_tokens` generated, `deadline` (time.monotonic())
    passed, or the text looping. `why` says which, for `finish_reason`."""

    max_tokens: int
    deadline: float | None = None
    guard: bool = True
    why: str | None = None

    def stop(self, text: str, n_tokens: int) -> bool:
        if n_tokens >= self.max_tokens:
            self.why = "length"
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.why = "timeout"
        elif self.guard and n_tokens % 4 == 0 and repeating(text):
            self.why = "repetition"
        return self.why is not None


def limits_from(kwargs: dict, default_tokens: int, *, guard: bool = True) -> Limits:
    """The limits a call asks for: `max_tokens` and `timeout` (seconds) from the call's
    keyword arguments (what the graph passes per step), else the backend's default."""
    timeout = kwargs.get("timeout")
    deadline = time.monotonic() + float(timeout) if timeout is not None else None
    return Limits(int(kwargs.get("max_tokens") or default_tokens), deadline, guard)


def cut_at_stops(text: str, stop: list[str] | None) -> str:
    """`text` up to the first of the `stop` strings (all of it when none occurs)."""
    for s in stop or []:
        text = text.split(s, 1)[0]
    return text


def token_usage(n_in: int, n_out: int) -> dict[str, int]:
    """LangChain's `usage_metadata` for a call."""
    return {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
