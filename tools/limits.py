"""Limits every entry point shares, in one place, importable without loading torch.

The CLI checks its arguments against these before any model loads; the tools check them
again, so a script calling a tool directly gets the same answer as the CLI.
"""

MAX_K = 1000
"""The most results one search returns (CLI, agent, evaluator alike)."""

LLM_RESULTS = 10
"""The most results a search shows the LLM line by line (the rest are counted)."""


def check_k(k: object) -> int:
    """`k` as an int in [1, MAX_K], or a `ValueError` that says what was wrong.

    >>> check_k(5)
    5
    >>> check_k(0)
    Traceback (most recent call last):
    ...
    ValueError: k must be a whole number from 1 to 1000, not 0
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    return k
