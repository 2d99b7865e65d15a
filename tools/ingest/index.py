"""Indexing: files on disk -> embeddings in a collection, incrementally and crash-safely.

Ids are content hashes, so a re-run is idempotent: unchanged files (same path, size,
mtime and caption) are skipped without reading, moved files keep their id and get a
new `uri`, and a run killed mid-way resumes where it stopped. For each new image the
caption entry is written before the image entry, so an image entry always means a
complete record. Reading, hashing and decoding run in threads while the model embeds
the previous batch. Bad files are skipped with a reason and never stop the run, and
neither does an entry the database refuses (it is skipped with the database's reason
and the rest of its batch written one by one). What was changed on the way in (a cut
caption, a renamed metadata key: `ingest.metadata`) is in the report's `warnings`.
Each image's colours, marks and words are read as it is (`tools.ingest.looks`); an image
indexed before one of them, or read by another marks reader or OCR version, has what is
due read on the next run without being embedded again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from chromadb.errors import InvalidArgumentError

from evident.tools.encoders import Encoder
from evident.tools.errors import InputError
from evident.tools.ingest.documents import discover_with_documents
from evident.tools.ingest.images import ImageFile, content_id, discover, image_bytes, read_image
from evident.tools.ingest.looks import OCR_MODES, OcrMode, due, look, read_words
from evident.tools.ingest.metadata import READ, sanitize
from evident.tools.ingest.ocr import (
    Reader,
    Reading,
    load_reader,
    search_document,
    words_text,
)
from evident.tools.limits import DEFAULT_LIMITS, Limits
from evident.tools.records import IndexReport, Skipped
from evident.tools.store import Store, iter_metadata

log = logging.getLogger(__name__)

# What Chroma raises when it refuses an entry (as opposed to a server that went away,
# which the store turns into a StoreError that ends the run).
REFUSED = (ValueError, TypeError, InvalidArgumentError)


@dataclass(frozen=True)
class _Decoded:
    file: ImageFile
    id: str
    pixels: torch.Tensor | None  # None: content already in the collection
    meta: dict[str, Any]
    reading: Reading | None = None  # words read in it now (None: not read this run)
    refreshed: bool = False  # already embedded; its colours, marks or words brought up to date


def index_paths(
    paths: Iterable[str | Path],
    *,
    store: Store,
    encoder: Encoder,
    collection: str,
    text_embedder=None,
    prune: bool = False,
    documents_cache: Path | None = None,
    files: Sequence[ImageFile | Skipped] | None = None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    ocr: OcrMode = "off",
    reader: Reader | None = None,
) -> IndexReport:
    """Index every image under `paths` into `collection` and report what happened.

    `text_embedder` (see `evident.tools.text_embed`) embeds captions and words for hybrid
    search; it is required when some file has a caption or `ocr` is not "off".
    `ocr` reads the words in the images (`tools.ingest.ocr`): "on" every image, "auto"
    those that look like figures or documents (`looks_like_figure`), "off" none; an image
    read before (same bytes, same OCR version) is not read again. `reader` is the OCR
    engine (loaded when needed). `progress(n)` is called as files finish.
    With `documents_cache`, images referenced by HTML pages get the page's caption and
    images inside PDFs are extracted there and indexed too (`evident.tools.ingest.documents`).
    `files` is what `find_files` found (found again when not given); `limits` bound what is
    read and stored. Every file not indexed is in the report's `skipped` with its reason.
    """
    roots = [Path(p).expanduser().resolve() for p in paths]
    if files is None:
        files = find_files(roots, documents_cache, limits)
    skipped: list[Skipped] = [f for f in files if isinstance(f, Skipped)]
    files = [sanitize(f, limits.max_caption_chars) for f in files if isinstance(f, ImageFile)]
    if ocr not in OCR_MODES:
        raise InputError(f"ocr must be one of {', '.join(OCR_MODES)}, not {ocr!r}")
    if any(f.caption for f in files) and text_embedder is None:
        raise InputError("some files have captions but no text embedder was given")
    if ocr != "off" and text_embedder is None:
        raise InputError("reading words (ocr) needs a text embedder to embed them")
    if ocr != "off" and reader is None:
        reader = load_reader()
    images, captions = store.ensure(
        collection, model=encoder.spec, dim=encoder.dim, weights=getattr(encoder, "weights", None)
    )
    words = store.words(collection, create=ocr != "off")
    by_uri: dict[str, tuple[str, dict]] = {}
    known: dict[str, dict] = {}
    for id_, meta in iter_metadata(images):
        by_uri[meta.get("uri", "")] = (id_, meta)
        known[id_] = meta
    if total:
        total(len(files))

    counts = {"indexed": 0, "unchanged": 0, "refreshed": 0, "moved": 0, "pruned": 0}
    todo: list[ImageFile] = []
    for f in files:
        if _unchanged(f, by_uri.get(str(f.path)), ocr):
            counts["unchanged"] += 1
            if progress:
                progress(1)
        else:
            todo.append(f)

    writer = _Writer(images, captions, words, encoder, text_embedder, known, counts, skipped)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="evident-decode") as pool:

        def submit(chunk: Sequence[ImageFile]) -> list[Future]:
            return [pool.submit(_decode, f, encoder, known, limits, ocr, reader) for f in chunk]

        chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        ahead = submit(chunks[0]) if chunks else []
        for n in range(len(chunks)):
            current, ahead = ahead, (submit(chunks[n + 1]) if n + 1 < len(chunks) else [])
            done: list[_Decoded] = []
            for fut, f in zip(current, chunks[n], strict=True):
                try:
                    done.append(fut.result())
                except InputError as exc:
                    skipped.append(Skipped(str(f.path), str(exc)))
            writer.write(done)
            log.info("wrote batch %d/%d", n + 1, len(chunks))
            if progress:
                progress(len(chunks[n]))

    if prune:
        counts["pruned"] = _prune(images, captions, words, roots)
    return IndexReport(
        collection, encoder.spec, skipped=tuple(skipped), warnings=_warnings(files), **counts
    )


def find_files(
    paths: Iterable[str | Path],
    documents_cache: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[ImageFile | Skipped]:
    """What `index_paths` would index under `paths`, and what it would skip with a reason
    (pass the list back as `files=`)."""
    roots = [Path(p).expanduser().resolve() for p in paths]
    if documents_cache is None:
        return list(discover(roots, max_document_bytes=limits.max_document_bytes))
    return list(
        discover_with_documents(
            roots, cache_dir=Path(documents_cache), max_document_bytes=limits.max_document_bytes
        )
    )


def _unchanged(f: ImageFile, existing: tuple[str, dict] | None, ocr: OcrMode) -> bool:
    if existing is None:
        return False
    _, meta = existing
    if due(meta, ocr):  # colours, marks or words never read, or read by another version
        return False
    try:
        st = f.path.stat()
    except OSError:
        return False
    return (
        meta.get("size") == st.st_size
        and meta.get("mtime_ns") == st.st_mtime_ns
        and meta.get("caption", "") == (f.caption or "")
        and all(meta.get(k) == v for k, v in f.metadata.items())
    )


def _decode(
    f: ImageFile,
    encoder: Encoder,
    known: dict[str, dict],
    limits: Limits,
    ocr: OcrMode,
    reader: Reader | None,
) -> _Decoded:
    data = image_bytes(f.path, max_bytes=limits.max_image_bytes)  # InputError says why not
    try:
        st = f.path.stat()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from exc
    id_ = content_id(data)
    meta = {"uri": str(f.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    meta.update(f.metadata)
    if f.caption:
        meta["caption"] = f.caption
    old = id_ in known  # same bytes already embedded: only the record changes
    if old:
        meta.update({k: known[id_][k] for k in READ if k in known[id_]})
    todo = due(meta, ocr)  # a new image: everything
    if old and not todo:
        return _Decoded(f, id_, None, meta)
    image = read_image(f.path, data)
    if not old:
        meta |= {"width": image.width, "height": image.height, "format": f.path.suffix[1:].lower()}
    look(image, meta, todo)
    reading = read_words(image, ocr, reader, meta, id_) if todo.words else None
    if old:
        return _Decoded(f, id_, None, meta, reading, refreshed=True)
    return _Decoded(f, id_, encoder.preprocess(image), meta, reading)


@dataclass
class _Writer:
    """Writes decoded batches; an entry Chroma refuses is skipped with Chroma's reason and
    the rest of its batch is written one by one, so one bad entry never loses a batch."""

    images: Any
    captions: Any
    words: Any
    encoder: Encoder
    text_embedder: Any
    known: dict[str, dict]
    counts: dict[str, int]
    skipped: list[Skipped]

    def write(self, done: list[_Decoded]) -> None:
        fresh: dict[str, tuple[_Decoded, str]] = {}
        for d in done:
            old = self.known.get(d.id)
            if d.pixels is None and old is not None and old.get("uri") != d.meta["uri"]:
                if Path(old.get("uri", "")).exists():
                    self.skipped.append(Skipped(d.meta["uri"], f"same content as {old['uri']!r}"))
                    continue
                outcome = "moved"
            else:
                outcome = (
                    "indexed" if d.pixels is not None
                    else "refreshed" if d.refreshed
                    else "unchanged"
                )  # fmt: skip
            fresh[d.id] = (d, outcome)  # duplicates inside one batch collapse onto one id
        if not fresh:
            return
        try:
            self._upsert([d for d, _ in fresh.values()])
        except REFUSED as exc:
            if len(fresh) > 1:
                for d, _ in fresh.values():
                    self.write([d])
                return
            ((d, _),) = fresh.values()
            self.skipped.append(Skipped(d.meta["uri"], f"refused by the database: {exc}"))
            return
        for d, outcome in fresh.values():
            self.counts[outcome] += 1
            self.known[d.id] = d.meta

    def _upsert(self, batch: list[_Decoded]) -> None:
        """Captions and words first, images last (an image entry marks completion)."""
        with_caption = [d for d in batch if d.meta.get("caption")]
        if with_caption:
            vecs = self.text_embedder.encode([d.meta["caption"] for d in with_caption])
            self.captions.upsert(
                ids=[d.id for d in with_caption],
                embeddings=vecs,
                metadatas=[d.meta for d in with_caption],
            )
        stale = [
            d.id
            for d in batch
            if not d.meta.get("caption") and self.known.get(d.id, {}).get("caption")
        ]
        if stale:
            self.captions.delete(ids=stale)
        _write_words(self.words, self.text_embedder, {d.id: d.reading for d in batch if d.reading})
        new = [d for d in batch if d.pixels is not None]
        if new:
            pixels = torch.stack([d.pixels for d in new])
            vecs = self.encoder.embed_pixels(pixels).cpu().numpy()
            self.images.upsert(
                ids=[d.id for d in new], embeddings=vecs, metadatas=[d.meta for d in new]
            )
        old = [d for d in batch if d.pixels is None]
        if old:
            # update() merges metadata; a key set to None is removed (a dropped caption, say)
            self.images.update(
                ids=[d.id for d in old],
                metadatas=[{k: None for k in self.known.get(d.id, {})} | d.meta for d in old],
            )


def _warnings(files: list[ImageFile]) -> tuple[str, ...]:
    """Each note once, with how many files it concerns."""
    by_note: dict[str, list[Path]] = {}
    for f in files:
        for note in f.notes:
            by_note.setdefault(note, []).append(f.path)
    return tuple(
        f"{paths[0]}: {note}"
        if len(paths) == 1
        else f"{note} ({len(paths)} files, e.g. {paths[0]})"
        for note, paths in by_note.items()
    )


def _write_words(words, text_embedder, readings: dict[str, Reading]) -> None:
    """The words of freshly read images: the lines as JSON, a search document, and the
    embedding of what the lines say. Images without words get no entry."""
    found = {i: r for i, r in readings.items() if r.lines}
    if not found:
        return
    ids = list(found)
    words.upsert(
        ids=ids,
        embeddings=text_embedder.encode([words_text(found[i]) for i in ids]),
        documents=[search_document(found[i]) for i in ids],
        metadatas=[{"lines": found[i].to_json()} for i in ids],
    )


def _prune(images, captions, words, roots: list[Path]) -> int:
    gone = [
        id_
        for id_, meta in iter_metadata(images)
        if _under(meta.get("uri", ""), roots) and not os.path.exists(meta.get("uri", ""))
    ]
    for i in range(0, len(gone), 1000):
        captions.delete(ids=gone[i : i + 1000])
        if words is not None:
            words.delete(ids=gone[i : i + 1000])
        images.delete(ids=gone[i : i + 1000])
    return len(gone)


def _under(uri: str, roots: list[Path]) -> bool:
    p = Path(uri)
    return any(p == r or r in p.parents for r in roots)
