"""Query suites: JSONL files of queries with their relevant images and target boxes.

One JSON object per line:

    {"id": "q7", "level": "component", "query": "the legend of a bar chart",
     "image": null, "relevant": ["images/test/fig_000002.png"],
     "targets": {"images/test/fig_000002.png": [[x0, y0, x1, y1], ...]}}

`query` (words) and/or `image` (a query image) ask; `relevant` lists the right answers;
`level` groups queries in the report (default "all"); `targets` (optional) are boxes in
image pixels, x1/y1 exclusive, on relevant images. Paths are relative to the suite file's
folder (absolute paths work too) and must exist. Blank lines are skipped. Every problem
is an `InputError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from evident.tools.errors import InputError

Box = tuple[int, int, int, int]


def stable_seed(seed: int, key: str) -> int:
    """A 64-bit seed from `(seed, key)`, the same in every process and Python version.

    >>> stable_seed(0, "q1:a.png") == stable_seed(0, "q1:a.png") != stable_seed(1, "q1:a.png")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SuiteQuery:
    """One query. `relevant` and the keys of `targets` are as written in the suite;
    `paths` maps each to its resolved absolute path."""

    id: str
    level: str
    text: str | None
    image: str | None
    relevant: tuple[str, ...]
    targets: Mapping[str, tuple[Box, ...]] = field(default_factory=dict)
    paths: Mapping[str, str] = field(default_factory=dict)


def load_suite(path: str | Path) -> list[SuiteQuery]:
    """Read and check a suite file; queries in file order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"suite file {str(path)!r} does not exist (expected a .jsonl file).")
    root = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"suite file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8."
        ) from exc
    queries: list[SuiteQuery] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        query = _parse(line, where, root)
        if query.id in seen:
            raise InputError(f"{where}: query id {query.id!r} is used twice; ids must be unique.")
        seen.add(query.id)
        queries.append(query)
    if not queries:
        raise InputError(f"suite file {str(path)!r} holds no queries.")
    return queries


def _parse(line: str, where: str, root: Path) -> SuiteQuery:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON ({exc}).") from exc
    if not isinstance(row, dict):
        raise InputError(f"{where}: each line must be a JSON object, not {type(row).__name__}.")
    qid, text, image = row.get("id"), row.get("query"), row.get("image")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid) == "":
        raise InputError(f"{where}: missing or empty 'id'.")
    if not (isinstance(text, str) and text.strip()) and not isinstance(image, str):
        raise InputError(f"{where}: a query needs 'query' (words) or 'image' (a path), or both.")
    relevant = row.get("relevant")
    if not (isinstance(relevant, list) and relevant and all(isinstance(r, str) for r in relevant)):
        raise InputError(f"{where}: 'relevant' must be a non-empty list of image paths.")
    paths = {r: _existing(r, root, where, "relevant image") for r in relevant}
    if isinstance(image, str):
        image = _existing(image, root, where, "query image")
    return SuiteQuery(
        id=str(qid),
        level=str(row.get("level") or "all"),
        text=text if isinstance(text, str) and text.strip() else None,
        image=image,
        relevant=tuple(dict.fromkeys(relevant)),
        targets=_targets(row.get("targets"), paths, where),
        paths=paths,
    )


def _existing(rel: str, root: Path, where: str, what: str) -> str:
    full = (root / rel).resolve()
    if not full.is_file():
        raise InputError(f"{where}: {what} {rel!r} does not exist (looked for {str(full)!r}).")
    return str(full)


def _targets(raw, paths: Mapping[str, str], where: str) -> dict[str, tuple[Box, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: 'targets' must map image paths to lists of boxes.")
    out = {}
    for image, boxes in sorted(raw.items()):
        if image not in paths:
            raise InputError(f"{where}: target image {image!r} is not in 'relevant'.")
        if not isinstance(boxes, list) or not all(_is_box(b) for b in boxes):
            raise InputError(
                f"{where}: targets of {image!r} must be boxes [x0, y0, x1, y1] with x0 < x1 "
                "and y0 < y1."
            )
        if boxes:
            out[image] = tuple(tuple(int(v) for v in b) for b in boxes)
    return out


def _is_box(box) -> bool:
    return (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        and box[0] < box[2]
        and box[1] < box[3]
    )


def select(queries: list[SuiteQuery], limit: int | None, seed: int = 0) -> list[SuiteQuery]:
    """At most `limit` queries: a seeded sample that keeps file order (all if None)."""
    if limit is None or limit >= len(queries):
        return list(queries)
    if limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}.")
    chosen = set(sorted((stable_seed(seed, q.id), q.id) for q in queries)[:limit])
    return [q for q in queries if (stable_seed(seed, q.id), q.id) in chosen]
