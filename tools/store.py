"""The image store: evident's collections in ChromaDB, embedded on a folder or a `chroma
run` server over HTTP (reaching either, locks, deadlines and one-line failures:
`tools.chroma`).

Each evident collection is up to three Chroma collections under the same ids: `NAME`
holds image embeddings (cosine space), `NAME-captions` caption embeddings from the text
embedder, and `NAME-words` the words read in each image (the lines as JSON in the
metadata, their text as the document, the text embedder's embedding of it).
The image collection's metadata records the encoder spec and dimension, and for folder
models a fingerprint of their weights; using it with another encoder, or another
version of the same one, is an `EncoderMismatchError`, never a silent mix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from filelock import FileLock

from evident.tools.chroma import Guarded, connect, translated
from evident.tools.errors import EncoderMismatchError, StoreError
from evident.tools.limits import CHROMA_TIMEOUT

SCHEMA = 1
CAPTIONS_SUFFIX = "-captions"
WORDS_SUFFIX = "-words"  # the words read in the images (OCR), under the images' ids
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,400}[A-Za-z0-9]$")
PAGE = 5000


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model: str
    dim: int
    count: int
    captions: int
    words: int = 0  # images with words read in them

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Store:
    """An open database. Use as a context manager so the lock is always released."""

    def __init__(self, client, location: str, lock: FileLock | None = None, timeout: float = 0):
        self.location = location
        self._lock = lock
        # every call on the client, and on the collections it returns: one-line failures
        self.client = Guarded(client, partial(translated, location, timeout))

    @classmethod
    def open(
        cls,
        db: str | Path,
        *,
        create: bool = False,
        lock_timeout: float = 10.0,
        timeout: float = CHROMA_TIMEOUT,
    ) -> Store:
        """Open `db`: a folder (embedded) or `http://HOST:PORT` (a Chroma server, each
        request answered within `timeout` seconds or a `StoreError`).

        With `create=False` a missing folder is a `StoreError`, never a new empty db; with
        `create=True` a folder holding other things than a database is refused.
        """

        client, location, lock = connect(
            str(db), create=create, lock_timeout=lock_timeout, timeout=timeout
        )
        return cls(client, location, lock, timeout)

    def close(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- collections --------------------------------------------------------------------

    def ensure(self, name: str, *, model: str, dim: int, weights: str | None = None):
        """The (images, captions) collections for indexing, created on first use;
        `weights` is the encoder's weights fingerprint (`specs.weights_id`), if it has one."""
        _check_name(name)
        existing = {c.name for c in self.client.list_collections()}
        if name in existing:
            images = self.images(name, model=model, dim=dim, weights=weights)
        else:
            meta = {"evident_model": model, "evident_dim": dim, "evident_schema": SCHEMA}
            images = self.client.create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=meta | ({"evident_weights": weights} if weights else {}),
            )
        captions = self.client.get_or_create_collection(
            name + CAPTIONS_SUFFIX,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"evident_role": "captions"},
        )
        return images, captions

    def images(
        self, name: str, *, model: str | None = None, dim: int | None = None,
        weights: str | None = None,
    ):  # fmt: skip
        """The image collection `name`; with `model`, checks it was indexed by that encoder
        (and with `weights`, by that version of it, where the collection recorded one)."""
        _check_name(name)
        try:
            col = self.client.get_collection(name, embedding_function=None)
        except StoreError:
            raise
        except Exception as exc:  # chromadb raises NotFoundError/ValueError by version
            known = sorted(self.collection_names())
            raise StoreError(
                f"no collection {name!r} in {self.location!r}; "
                + (f"collections here: {', '.join(map(repr, known))}." if known else "it is empty.")
            ) from exc
        meta = col.metadata or {}
        if "evident_model" not in meta:
            raise StoreError(f"collection {name!r} was not made by evident (no encoder recorded).")
        if model is not None and (
            meta["evident_model"] != model or (dim and meta["evident_dim"] != dim)
        ):
            raise EncoderMismatchError(
                f"collection {name!r} was indexed with encoder {meta['evident_model']!r} "
                f"(dim {meta['evident_dim']}), not {model!r}"
                + (f" (dim {dim})" if dim else "")
                + ". Leave out --model to use the collection's own encoder, or index into a new "
                "collection with --collection NAME."
            )
        recorded = meta.get("evident_weights")
        # every index since fingerprints were recorded writes one, and the bundled model has
        # been retrained since: a bundled collection without one predates this model (a
        # local-dir one from then stays unchecked: its folder may be unchanged)
        stale = recorded != weights if recorded else str(model).startswith("bundled:")
        if model is not None and weights and stale:
            which = (
                f"another version of {model!r} (weights {recorded}, installed {weights})"
                if recorded
                else f"an earlier version of {model!r} (it predates recorded model versions)"
            )
            raise EncoderMismatchError(
                f"collection {name!r} was indexed with {which}, so its image vectors do not "
                "match this model's. Index the images again into a new collection "
                "(--collection NAME), or delete the old one's database folder first."
            )
        return col

    def captions(self, name: str):
        """The caption collection of `name`, or None when nothing in it has a caption."""
        return self._side(name + CAPTIONS_SUFFIX)

    def words(self, name: str, *, create: bool = False):
        """The words collection of `name` (None when nothing was read in its images,
        unless `create`)."""
        if create:
            return self.client.get_or_create_collection(
                name + WORDS_SUFFIX,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"evident_role": "words"},
            )
        return self._side(name + WORDS_SUFFIX)

    def has_texts(self, name: str) -> bool:
        """Whether any image of `name` has a caption or words read in it (the searches
        that score them need the text embedder)."""
        return self.captions(name) is not None or self.words(name) is not None

    def _side(self, full: str):
        try:
            col = self.client.get_collection(full, embedding_function=None)
        except StoreError:
            raise
        except Exception:  # absent: a collection indexed without captions or words
            return None
        return col if col.count() else None

    def model_of(self, name: str) -> str:
        return self.images(name).metadata["evident_model"]

    def collection_names(self) -> list[str]:
        return [
            c.name
            for c in self.client.list_collections()
            if not c.name.endswith((CAPTIONS_SUFFIX, WORDS_SUFFIX))
        ]

    def info(self, name: str) -> CollectionInfo:
        col = self.images(name)
        caps, words = self.captions(name), self.words(name)
        meta = col.metadata
        return CollectionInfo(
            name,
            meta["evident_model"],
            meta["evident_dim"],
            col.count(),
            caps.count() if caps else 0,
            words.count() if words else 0,
        )

    def batch_size(self) -> int:
        try:
            return max(1, min(PAGE, int(self.client.get_max_batch_size())))
        except (AttributeError, TypeError):
            return PAGE


def iter_metadata(col, page: int = PAGE) -> Iterator[tuple[str, dict]]:
    """Every (id, metadata) of a collection, page by page."""
    offset = 0
    while True:
        got = col.get(include=["metadatas"], limit=page, offset=offset)
        for i, m in zip(got["ids"], got["metadatas"], strict=True):
            yield i, m or {}
        if len(got["ids"]) < page:
            return
        offset += page


def iter_documents(col, page: int = PAGE) -> Iterator[tuple[str, str]]:
    """Every (id, document) of a collection, page by page."""
    offset = 0
    while True:
        got = col.get(include=["documents"], limit=page, offset=offset)
        for i, d in zip(got["ids"], got["documents"], strict=True):
            yield i, d or ""
        if len(got["ids"]) < page:
            return
        offset += page


def _check_name(name: str) -> None:
    if not NAME_RE.match(name) or ".." in name:
        raise StoreError(
            f"collection name {name!r} is not allowed: use 3-400 letters, digits, '.', '_' or "
            "'-', starting and ending with a letter or digit."
        )
