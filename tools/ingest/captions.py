"""Captions and metadata from the files beside images: sidecars and `captions.jsonl`.

For an image `NAME.png`: a `captions.jsonl` line (`{"file": ..., "caption": ..., ...}`), then
a sidecar `NAME.json` (`caption` plus other scalar fields as metadata), then a sidecar
`NAME.txt` (the caption) — each later one wins for the caption; metadata merges.

A `captions.jsonl` line names its image by a path relative to the file's own folder
(`a.png`, `sub/b.png`), so one file at the top of a collection can caption images in
sub-folders; the file nearest the image wins. A line that is not a JSON object naming a
`file` is reported (with its line number) rather than dropped in silence, and a byte-order
mark at the start of a line is ignored.

Every sidecar is read only when it resolves inside the folders the person named, is a
regular file, and is at most `max_bytes`; otherwise the image is indexed without it and a
note says why. Values here are raw: `ingest.metadata.sanitize` makes them storable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evident.tools.errors import InputError
from evident.tools.ingest.files import inside, read_text
from evident.tools.records import Skipped

CAPTIONS_JSONL = "captions.jsonl"
NAME_KEYS = ("file", "image", "path")
SHOWN_LINES = 10


class FolderCaptions:
    """The captions of the images under `roots` (resolved), reading each `captions.jsonl`
    once. A root that is a file brings the caption files of its own folder with it."""

    def __init__(self, roots: list[Path], max_bytes: int) -> None:
        self.roots = [r if r.is_dir() else r.parent for r in roots]
        self.max_bytes = max_bytes
        self._jsonl: dict[Path, dict[Path, dict]] = {}  # folder -> image path -> record
        self._problems: list[Skipped] = []

    def for_image(self, path: Path) -> tuple[str | None, dict[str, Any], tuple[str, ...]]:
        """(caption, metadata, notes) for the resolved image `path`."""
        notes: list[str] = []
        meta: dict[str, Any] = {}
        caption = None
        if record := self._line_for(path):
            caption = record.get("caption")
            meta.update(_scalars(record, skip={*NAME_KEYS, "caption"}))
        js = self._sidecar(path.with_suffix(".json"), notes)
        if js is not None:
            try:
                record = json.loads(js)
            except ValueError as exc:
                notes.append(f"sidecar {path.with_suffix('.json').name!r} is not JSON ({exc})")
                record = {}
            if isinstance(record, dict):
                caption = record.get("caption", caption)
                meta.update(_scalars(record, skip={"caption"}))
        txt = self._sidecar(path.with_suffix(".txt"), notes)
        if txt is not None:
            caption = txt.strip() or caption
        caption = caption if isinstance(caption, str) and caption.strip() else None
        return caption, meta, tuple(notes)

    def problems(self) -> list[Skipped]:
        """The caption files that could not be used, or only in part, and why."""
        return list(self._problems)

    def _sidecar(self, path: Path, notes: list[str]) -> str | None:
        if not path.exists():
            return None
        real = path.resolve()
        if not inside(real, self.roots):
            notes.append(f"sidecar {path.name!r} links outside the folders named; not read")
            return None
        try:
            return read_text(real, self.max_bytes)
        except InputError as exc:
            notes.append(f"sidecar {path.name!r} not read: {exc}")
            return None

    def _line_for(self, image: Path) -> dict | None:
        """The nearest `captions.jsonl` line naming `image`, looking up to its root."""
        root = max((r for r in self.roots if inside(image, [r])), key=lambda r: len(r.parts))
        folder = image.parent
        while True:
            if (record := self._lines(folder).get(image)) is not None:
                return record
            if folder == root or folder == folder.parent:
                return None
            folder = folder.parent

    def _lines(self, folder: Path) -> dict[Path, dict]:
        if folder not in self._jsonl:
            self._jsonl[folder] = self._read(folder / CAPTIONS_JSONL)
        return self._jsonl[folder]

    def _read(self, path: Path) -> dict[Path, dict]:
        if not path.exists():
            return {}
        real = path.resolve()
        if not inside(real, self.roots):
            self._problems.append(Skipped(str(path), "a link outside the folders named; not read"))
            return {}
        try:
            text = read_text(real, self.max_bytes)
        except InputError as exc:
            self._problems.append(Skipped(str(path), str(exc)))
            return {}
        out: dict[Path, dict] = {}
        bad: list[int] = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.lstrip("\ufeff").strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            name = _name(record)
            if name is None:
                bad.append(n)
                continue
            out[Path(os.path.normpath(path.parent / name))] = record
        if bad:
            self._problems.append(Skipped(str(path), _bad_lines(bad)))
        return out


def _name(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    name = next((record[k] for k in NAME_KEYS if isinstance(record.get(k), str)), None)
    return name if name and name.strip() else None


def _bad_lines(numbers: list[int]) -> str:
    """
    >>> _bad_lines([2, 3, 4])
    "lines 2, 3, 4 ignored: each line must be a JSON object naming its image in 'file'"
    """
    shown = ", ".join(map(str, numbers[:SHOWN_LINES]))
    more = f" and {len(numbers) - SHOWN_LINES} more" if len(numbers) > SHOWN_LINES else ""
    what = "line" if len(numbers) == 1 else "lines"
    return (
        f"{what} {shown}{more} ignored: each line must be a JSON object naming its image in 'file'"
    )


def _scalars(record: dict, *, skip: set[str]) -> dict[str, Any]:
    """Fields Chroma can store and filter on: str, int, float, bool and lists of str."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if k in skip or not isinstance(k, str):
            continue
        scalar = isinstance(v, str | int | float | bool)
        strings = isinstance(v, list) and v and all(isinstance(x, str) for x in v)
        if scalar or strings:
            out[k] = v
    return out
