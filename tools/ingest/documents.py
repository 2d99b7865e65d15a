"""Images found inside documents, captioned by the text around them.

HTML: each `<img>` gets a caption from the page title (its first `<h1>`), the nearest
preceding heading, its `<figcaption>` (or Sphinx's older `<div class="figure">` +
`<p class="caption">`), its `alt` and its `title`, joined with ". " without repeats; an
`alt` that is only a file name (Sphinx's default) is ignored. `src` resolves relative to the page;
remote URLs and site-absolute paths (`/img/x.png`) are skipped, `data:` URIs are decoded
into `cache_dir` under their content hash. PDF: see `evident.tools.ingest.pdf_figures`.

Confinement: a page is the stranger's text. A reference is followed only when it resolves
(`..`, `%2e%2e`, `file:` URLs, links all followed first) to a file inside the folders
indexed (`roots`); the others are not read, and the page gets one `Skipped` entry saying how
many of its references left those folders. Pages and PDFs over the document size limit, or
not regular files, are skipped with the reason too.

`discover_with_documents` is `ingest.images.discover` plus what documents say: an image
file that a page shows is yielded once, with the page's caption (a sidecar caption
still wins), and images that exist only inside documents are added.

Not handled: `srcset` alternatives, `<picture>`, CSS background images, SVG (not
indexable), pages in encodings other than UTF-8, images a page links to with `<a>`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from evident.tools.errors import InputError
from evident.tools.ingest.files import inside, read_text
from evident.tools.ingest.images import IMAGE_SUFFIXES, ImageFile, content_id, discover
from evident.tools.ingest.pdf_figures import pdf_images
from evident.tools.limits import MAX_DOCUMENT_BYTES
from evident.tools.records import Skipped

log = logging.getLogger(__name__)

HTML_SUFFIXES = frozenset({".html", ".htm"})
DOCUMENT_SUFFIXES = HTML_SUFFIXES | {".pdf"}
DATA_URI_TYPES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
}
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
SHOWN_REFS = 3


def discover_with_documents(
    paths: Iterable[str | Path], *, cache_dir: Path, max_document_bytes: int = MAX_DOCUMENT_BYTES
) -> Iterator[ImageFile | Skipped]:
    """Image files under `paths` and images inside the HTML and PDF files there, each once,
    and a `Skipped` for each file or page refused (see `discover` and `document_images`).

    An image shown by several pages takes the longest caption (the first page in path
    order on ties) and records how many pages show it (`pages`).
    """
    roots = [Path(p).expanduser() for p in paths]
    found = list(discover(roots, max_document_bytes=max_document_bytes))  # InputError if missing
    on_disk = [f for f in found if isinstance(f, ImageFile)]
    yield from (f for f in found if isinstance(f, Skipped))
    resolved = [r.resolve() for r in roots]
    shown: dict[Path, ImageFile] = {}
    for doc in _documents(roots, resolved):
        if isinstance(doc, Skipped):
            yield doc
            continue
        for ref in document_images(
            doc, cache_dir=cache_dir, roots=resolved, max_bytes=max_document_bytes
        ):
            if isinstance(ref, Skipped):
                yield ref
                continue
            old = shown.get(ref.path)
            best = ref if old is None or _richness(ref) > _richness(old) else old
            count = (old.metadata.get("pages", 1) if old else 0) + 1
            shown[ref.path] = ImageFile(best.path, best.caption, best.metadata | {"pages": count})
    for f in on_disk:
        ref = shown.pop(f.path, None)
        if ref is None:
            yield f
        else:
            yield ImageFile(f.path, f.caption or ref.caption, ref.metadata | f.metadata, f.notes)
    yield from (shown[p] for p in sorted(shown))


def document_images(
    path: Path,
    *,
    cache_dir: Path,
    roots: Iterable[Path] | None = None,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> Iterator[ImageFile | Skipped]:
    """Images that the document at `path` (`.html`, `.htm` or `.pdf`) shows, with captions,
    then one `Skipped` for the page if it could not be read or referred outside `roots`
    (resolved folders; default: the page's own folder).

    Each image path is yielded once per document. Metadata: `source` (the document),
    plus `page` for PDFs and `heading` / `alt` for HTML where present.
    """
    path = Path(path).resolve()
    roots = [Path(r) for r in roots] if roots is not None else [path.parent]
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        yield from pdf_images(path, cache_dir=cache_dir, max_bytes=max_bytes)
        return
    if suffix not in HTML_SUFFIXES:
        raise InputError(f"not an HTML or PDF document: {str(path)!r}")
    try:
        text = read_text(path, max_bytes)
    except InputError as exc:
        yield Skipped(str(path), str(exc))
        return
    parser = _ImageRefs()
    parser.feed(text)
    parser.close()
    best: dict[Path, ImageFile] = {}
    outside: list[str] = []
    for ref in parser.refs:
        image = _resolve(ref["src"], path, cache_dir)
        if image is None:
            continue
        if not inside(image, [*roots, Path(cache_dir).resolve()]):
            outside.append(ref["src"])
            continue
        if not image.exists():
            continue
        alt = "" if _is_file_name(ref["alt"]) else ref["alt"]
        parts = [ref["page"], ref["heading"], ref.get("figcaption"), alt, ref["title"]]
        meta = {"source": str(path)}
        meta.update({k: v for k, v in (("heading", ref["heading"]), ("alt", alt)) if v})
        found = ImageFile(image, join_caption(parts), meta)
        if image not in best or _richness(found) > _richness(best[image]):
            best[image] = found
    yield from best.values()
    if outside:
        yield Skipped(str(path), _outside(outside))


def _outside(srcs: list[str]) -> str:
    """The one reason a page gets for all its references that leave the indexed folders.

    >>> _outside(["../a.png", "/b.png", "c", "d"])[-51:]
    "were not read: '../a.png', '/b.png', 'c' and 1 more"
    """
    shown = ", ".join(repr(s[:80]) for s in srcs[:SHOWN_REFS])
    more = f" and {len(srcs) - SHOWN_REFS} more" if len(srcs) > SHOWN_REFS else ""
    what = "1 image reference leads" if len(srcs) == 1 else f"{len(srcs)} image references lead"
    return f"{what} outside the folders indexed and were not read: {shown}{more}"


def join_caption(parts: Iterable[str | None]) -> str | None:
    """Non-empty parts joined by ". ", dropping a part that an earlier one already contains.

    >>> join_caption(["Edges", "Canny filter", "canny filter", None, "", "Edges found"])
    'Edges. Canny filter. Edges found'
    """
    kept: list[str] = []
    for part in (" ".join(p.split()).rstrip(".") for p in parts if p):
        if part and not any(part.lower() in k.lower() for k in kept):
            kept.append(part)
    return ". ".join(kept) or None


def _is_file_name(text: str) -> bool:
    """Whether `text` is only a path to an image file (what Sphinx puts in an empty alt).

    >>> _is_file_name("../_images/plot_001.png"), _is_file_name("a plot")
    (True, False)
    """
    return Path(text.strip()).suffix.lower() in IMAGE_SUFFIXES | {".svg"} and " " not in text


def _richness(f: ImageFile) -> int:
    return len(f.caption or "")


def _documents(roots: list[Path], resolved: list[Path]) -> list[Path | Skipped]:
    """The pages and PDFs under `roots`, resolved; one that leads outside them is refused."""
    docs: set[Path] = set()
    refused: list[Skipped] = []
    for root in roots:
        files = [root] if not root.is_dir() else (p for p in root.rglob("*") if not p.is_dir())
        for f in files:
            if f.suffix.lower() not in DOCUMENT_SUFFIXES:
                continue
            if inside(real := f.resolve(), resolved):
                docs.add(real)
            else:
                refused.append(
                    Skipped(str(f), f"a link to {str(real)!r}, outside the folders named")
                )
    return [*refused, *sorted(docs)]


def _resolve(src: str, page: Path, cache_dir: Path) -> Path | None:
    """The resolved local path an `<img src>` names (it may not exist, or lie outside the
    folders indexed), or None (remote, site-absolute, not an image name)."""
    try:
        parts = urlsplit(src.strip())
    except ValueError:  # e.g. "http://[::1": not a URL at all
        return None
    if parts.scheme == "data":
        return _decode_data_uri(src.strip(), cache_dir)
    if parts.scheme not in ("", "file") or parts.netloc or not parts.path:
        return None  # http(s), ftp, protocol-relative: never fetched
    if parts.scheme == "" and parts.path.startswith("/"):
        log.debug("skipping site-absolute image %r in %s", src, page)
        return None
    target = Path(unquote(parts.path))
    try:
        target = (target if target.is_absolute() else page.parent / target).resolve()
    except (ValueError, OSError):  # an embedded NUL, a link loop
        return None
    return target if target.suffix.lower() in IMAGE_SUFFIXES else None


def _decode_data_uri(uri: str, cache_dir: Path) -> Path | None:
    header, _, payload = uri[len("data:") :].partition(",")
    suffix = DATA_URI_TYPES.get(header.split(";")[0].strip().lower())
    if suffix is None:
        return None
    try:
        is_b64 = ";base64" in header.lower()
        data = base64.b64decode(payload, validate=False) if is_b64 else unquote_to_bytes(payload)
    except ValueError as exc:
        log.warning("skipping undecodable data: URI image: %s", exc)
        return None
    if not data:
        return None
    out = Path(cache_dir) / f"{content_id(data)}{suffix}"
    try:
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
    except OSError as exc:
        log.warning("cannot keep a data: URI image in %s: %s", cache_dir, exc.strerror or exc)
        return None
    return out.resolve()


class _ImageRefs(HTMLParser):
    """Collects `refs`: one dict per `<img>` with src, alt, title, heading, figcaption."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[dict[str, str]] = []
        self.heading = ""
        self.page_title = ""  # the first <h1>
        self._heading_text: list[str] | None = None
        self._figures: list[dict] = []  # open figures: pending refs, caption text
        self._caption_tag: str | None = None  # inside <figcaption> / <p class="caption">
        self._skip_depth = 0  # inside a permalink anchor ("¶")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag in HEADINGS:
            self._heading_text = []
        elif tag == "a" and "headerlink" in classes:
            self._skip_depth += 1
        elif tag == "figure" or (tag == "div" and "figure" in classes):
            self._figures.append({"tag": tag, "divs": 0, "refs": [], "caption": []})
        elif tag == "div" and self._figures and self._figures[-1]["tag"] == "div":
            self._figures[-1]["divs"] += 1
        elif self._figures and (tag == "figcaption" or (tag == "p" and "caption" in classes)):
            self._caption_tag = tag
        elif tag == "img" and a.get("src"):
            ref = {"src": a["src"], "alt": a.get("alt", ""), "title": a.get("title", "")}
            ref |= {"heading": self.heading, "page": self.page_title}
            (self._figures[-1]["refs"] if self._figures else self.refs).append(ref)

    def handle_endtag(self, tag: str) -> None:
        if tag in HEADINGS and self._heading_text is not None:
            self.heading = " ".join("".join(self._heading_text).split())
            self._heading_text = None
            if tag == "h1" and not self.page_title:
                self.page_title = self.heading
        elif tag == "a" and self._skip_depth:
            self._skip_depth -= 1
        elif tag == self._caption_tag:
            self._caption_tag = None
        elif self._figures and tag == self._figures[-1]["tag"]:
            if tag == "div" and self._figures[-1]["divs"]:
                self._figures[-1]["divs"] -= 1
                return
            figure = self._figures.pop()
            caption = " ".join("".join(figure["caption"]).split())
            self.refs.extend(r | {"figcaption": caption} for r in figure["refs"])

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._heading_text is not None:
            self._heading_text.append(data)
        if self._caption_tag and self._figures:
            self._figures[-1]["caption"].append(data)

    def close(self) -> None:
        super().close()
        for figure in reversed(self._figures):  # unclosed figures at the end of the page
            self.refs.extend(r | {"figcaption": ""} for r in figure["refs"])
        self._figures.clear()
