"""Real figures queried by what people wrote about them: Debian's documentation packages.

`python-skimage-doc` and `python-statsmodels-doc` install real Sphinx pages with real
figures (plots, diagrams, processed photographs; gallery thumbnails are left out). Each
page that shows figures and opens with a description gives one query: the first sentence
of that description, written by the page's author ("The Canny filter is a multi-stage edge
detector."), with the page's figures as the relevant images. That sentence is never the
figures' own alt text, caption or heading, so indexing the pages (their headings and
captions) is a fair comparison rather than a lookup.

`doc_queries(roots)` builds the query set (`tests/data/doc_queries.jsonl` holds the one the
tests use, written down); `measure` runs one setup (image files alone, with the words read
in them, with the pages' text, with both) and gives recall@10 with a bootstrap interval.
Not handled: pages without a leading description, figures shown on several pages with
different descriptions (the first page wins), scikit-image's API pages (a module's page
opens with its first function's description, not its figures').
"""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from evident.eval.metrics import recall_at_k
from evident.tools.ingest.documents import discover_with_documents
from evident.tools.ingest.images import ImageFile

ROOTS = (
    Path("/usr/share/doc/python-skimage-doc/html"),
    Path("/usr/share/doc/python-statsmodels-doc/html"),
)
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg")


class _Page(HTMLParser):
    """The page's <h1>, the first paragraph after it, and every <img src>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title, self.paragraph, self.images = "", "", []
        self._in: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "img":
            src = dict(attrs).get("src")
            if src:
                self.images.append(src)
        elif tag == "h1" and not self.title:
            self._in, self._text = "h1", []
        elif tag == "p" and self.title and not self.paragraph:
            self._in, self._text = "p", []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            text = " ".join("".join(self._text).replace("¶", "").split())
            if tag == "h1":
                self.title = text
            elif len(text.split()) >= 6:
                self.paragraph = text
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text.append(data)


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph.

    >>> first_sentence("The Canny filter is a detector. It uses a filter.")
    'The Canny filter is a detector.'
    """
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip(), maxsplit=1)[0]


def doc_queries(roots=ROOTS) -> list[dict]:
    """`{"query", "relevant": [figure paths relative to their package root's parent]}` per
    page that shows figures and opens with a description (at least six words)."""
    seen: set[str] = set()
    rows = []
    for root in roots:
        for page in sorted(root.rglob("*.html")):
            if "api" in page.relative_to(root).parts:
                continue  # a module's page opens with its first function, not its figures
            parser = _Page()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            figures = []
            for src in parser.images:
                path = (page.parent / html.unescape(src).split("#")[0]).resolve()
                if _figure(path, root) and str(path) not in seen and path not in figures:
                    figures.append(path)
            if not figures or not parser.paragraph:
                continue
            seen.update(map(str, figures))
            relevant = sorted(str(p.relative_to(root.parent.parent)) for p in figures)
            rows.append({"query": first_sentence(parser.paragraph), "relevant": relevant})
    return rows


def _figure(path: Path, root: Path) -> bool:
    """A figure of the package: not a theme asset, not a gallery thumbnail (API pages show
    thumbnails of other pages' examples)."""
    return (
        path.suffix.lower() in FIGURE_SUFFIXES
        and "_static" not in path.parts
        and "_thumb" not in path.name
        and root in path.parents
        and path.is_file()
    )


def figures(queries: list[dict], base: Path) -> list[Path]:
    """Every relevant figure of the query set, as paths under `base`."""
    return sorted({base / r for q in queries for r in q["relevant"]})


def recall_with_interval(
    ranked: list[list[str]], queries: list[dict], k: int = 10, seed: int = 0, n_boot: int = 1000
) -> dict:
    """Mean recall@k over the queries and its 95% bootstrap interval."""
    values = np.array(
        [recall_at_k(r, set(q["relevant"]), k) for r, q in zip(ranked, queries, strict=True)]
    )
    rng = np.random.default_rng(seed)
    boots = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"recall@10": round(float(values.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)]}


SETUPS = {  # name: (the pages' text as captions, the words read in the images)
    "image files": (False, False),
    "+ words": (False, True),
    "+ page text": (True, False),
    "+ both": (True, True),
}


def flat_name(relative: str) -> str:
    """A figure's file name in the flat corpus folders.

    >>> flat_name("python-skimage-doc/html/_images/a.png")
    'python-skimage-doc__html___images__a.png'
    """
    return relative.replace("/", "__")


def corpus(out: Path, roots=ROOTS) -> dict[str, Path]:
    """Every figure of the packages copied into `out/plain` (files alone) and into
    `out/captioned` with a `captions.jsonl` of what their pages say about them (title,
    heading, caption, alt text: `ingest.documents`). Returns the two folders."""
    plain, captioned = out / "plain", out / "captioned"
    for folder in (plain, captioned):
        folder.mkdir(parents=True, exist_ok=True)
    said = {}
    for f in discover_with_documents(list(roots), cache_dir=out / "document-images"):
        if isinstance(f, ImageFile) and f.caption:
            said[f.path.resolve()] = f.caption
    lines = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not _figure(path.resolve(), root):
                continue
            name = flat_name(str(path.resolve().relative_to(root.parent.parent)))
            for folder in (plain, captioned):
                shutil.copyfile(path, folder / name)
            if path.resolve() in said:
                lines.append({"file": name, "caption": said[path.resolve()]})
    with (captioned / "captions.jsonl").open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
    return {"plain": plain, "captioned": captioned}
