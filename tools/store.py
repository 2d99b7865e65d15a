"""The image store: ChromaDB, embedded on a folder or a `chroma run` server over HTTP.

Each evident collection is up to three Chroma collections under the same ids: `NAME`
holds image embeddings (cosine space), `NAME-captions` caption embeddings from the text
embedder, and `NAME-words` the words read in each image (the lines as JSON in the
metadata, their text as the document, the text embedder's embedding of it).
The image collection's metadata records the encoder spec and dimension; using it
with another encoder is an `EncoderMismatchError`, never a silent mix.

An embedded database is not safe for two processes at once (Chroma's own warning),
so opening one takes a file lock for as long as the `Store` is open: a second
process waits up to `lock_timeout` seconds, then gets a clear `StoreError`. Many
concurrent readers belong on a server (`chroma run`), which needs no lock.

Parts that fail are `StoreError`s with one line for the person: a server that does not
answer within `timeout` seconds (every request has that deadline; Chroma's own client
has none), one that goes away mid-run or answers with something that is not Chroma, a
database file that is not one. Every call on the client and on the collections it
hands out goes through that translation (`_Guarded`). A folder that is not a database is
never turned into one behind the person's back: searching it is an error, and indexing
into it is refused unless it is empty (or holds only what evident keeps beside a database).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import InternalError
from filelock import FileLock, Timeout

from evident.tools.errors import EncoderMismatchError, StoreError
from evident.tools.limits import CHROMA_TIMEOUT

log = logging.getLogger(__name__)

LOCK_FILE = ".evident.lock"
CHROMA_FILE = "chroma.sqlite3"
BESIDE = frozenset({LOCK_FILE, "document-images", "overlays"})  # what evident keeps in a db folder
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
        self.timeout = timeout
        self._lock = lock
        self.client = _Guarded(client, self.guard)

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

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        db = str(db)
        if db.startswith(("http://", "https://")):
            return cls(_http_client(db, settings, timeout), db, timeout=timeout)
        path = _folder(db, create)
        lock = FileLock(str(path / LOCK_FILE), timeout=lock_timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"the database {str(path)!r} is in use by another evident process (waited "
                f"{lock_timeout:g} s). Wait for it to finish, raise --lock-timeout, or serve "
                "the folder with `chroma run` and use --db http://HOST:PORT for many readers."
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"cannot lock the database {str(path)!r}: {exc.strerror or exc}"
            ) from exc
        try:
            client = chromadb.PersistentClient(path=str(path), settings=settings)
        except Exception as exc:  # Chroma and its Rust core raise many kinds for one cause
            lock.release()
            raise StoreError(
                f"cannot open the Chroma database in {str(path)!r} ({_short(exc)}); is it "
                "a database written by another Chroma version, or damaged? Pass another --db."
            ) from exc
        return cls(client, str(path), lock)

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Chroma's failures during `what` as `StoreError`s that say what to do; refusals of
        what was asked (invalid arguments, a missing collection) pass unchanged."""
        where = f"the Chroma server at {self.location!r}"
        try:
            yield
        except httpx.TimeoutException as exc:
            raise StoreError(
                f"{where} did not answer within {self.timeout:g} s ({what}); check that it is "
                "running and not overloaded, or raise EVIDENT_CHROMA_TIMEOUT."
            ) from exc
        except (httpx.TransportError, ConnectionError) as exc:
            raise StoreError(
                f"lost {where} during {what} ({_short(exc)}); what was written before is "
                "kept: run the command again once the server is back."
            ) from exc
        except (httpx.HTTPStatusError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"{where} answered {what} with something that is not Chroma's "
                f"({_short(exc)}); is --db the right address?"
            ) from exc
        except InternalError as exc:
            db = f"the Chroma database at {self.location!r}"
            raise StoreError(f"{db} failed during {what}: {_short(exc)}") from exc
        except Exception as exc:
            if type(exc) is Exception:  # how Chroma's HTTP client reports a server error
                raise StoreError(f"{where} failed during {what}: {_short(exc)}") from exc
            raise

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
        if model is not None and weights and recorded and recorded != weights:
            raise EncoderMismatchError(
                f"collection {name!r} was indexed with another version of {model!r} (weights "
                f"{recorded}, this install has {weights}), so its image vectors do not match "
                "this model's. Index the images again into a new collection (--collection "
                "NAME), or delete the old one's database folder first."
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


def _folder(db: str, create: bool) -> Path:
    """The database folder `db` names, made when `create` and it does not exist; a folder
    that holds something other than a database is refused, and nothing is written to it."""
    path = Path(db).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise StoreError(
            f"--db {str(path)!r} is a file, not a folder; pass a folder for the database."
        )
    if not path.is_dir():
        if not create:
            raise StoreError(
                f"no evident database at {str(path)!r}; index some images first "
                f"(evident index PATH --db {db}) or pass the right --db."
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot make the database folder {str(path)!r}: {_short(exc)}"
            ) from exc
        return path
    if (path / CHROMA_FILE).exists():
        return path
    if not create:
        raise StoreError(
            f"no evident database at {str(path)!r} (the folder holds no {CHROMA_FILE}); "
            "pass the folder you indexed into as --db."
        )
    others = sorted(p.name for p in path.iterdir() if p.name not in BESIDE)
    if others:
        shown = ", ".join(map(repr, others[:3])) + (" ..." if len(others) > 3 else "")
        raise StoreError(
            f"{str(path)!r} is not an evident database and is not empty (it holds {shown}); "
            "pass a new or empty folder as --db, so nothing of yours is mixed with it."
        )
    return path


def check_location(db: str | Path, *, create: bool = False) -> None:
    """Refuse a --db folder that `Store.open` would refuse, before any work is done and
    without writing anything (a server address is checked when it is opened)."""
    if str(db).startswith(("http://", "https://")):
        return
    if not (create and not Path(db).expanduser().exists()):
        _folder(str(db), create)


class _Guarded:
    """A Chroma client or collection whose every call goes through `guard`; collections it
    returns are guarded too."""

    def __init__(self, target: Any, guard: Callable[[str], Any]) -> None:
        self._target, self._guard = target, guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._guard(name):
                out = attr(*args, **kwargs)
            return _Guarded(out, self._guard) if isinstance(out, Collection) else out

        return call


def _short(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the start of its message."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[:limit] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _http_client(url: str, settings: Settings, timeout: float):
    """A client of the server at `url` whose requests each have `timeout` seconds. Chroma's
    client talks to the server while it is built, without a deadline, so it is built in a
    thread that is abandoned (it is a daemon) if the server does not answer in time."""
    u = urlparse(url)
    try:
        host, port = u.hostname, u.port or 8000
    except ValueError:  # a port that is not a number
        host = None
    if not host:
        raise StoreError(f"cannot read a host and port from --db {url!r}; use http://HOST:PORT.")
    built: dict[str, Any] = {}

    def build() -> None:
        try:
            built["client"] = chromadb.HttpClient(
                host=host, port=port, ssl=u.scheme == "https", settings=settings
            )
        except Exception as exc:  # connection refused, DNS, TLS: all mean the same to the user
            built["error"] = exc

    thread = threading.Thread(target=build, name="evident-chroma-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StoreError(
            f"the Chroma server at {url!r} did not answer within {timeout:g} s (connect); "
            "check that it is running and not overloaded, or raise EVIDENT_CHROMA_TIMEOUT."
        )
    if "error" in built:
        exc = built["error"]
        raise StoreError(
            f"cannot reach a Chroma server at {url!r} ({_short(exc)}). Start one with "
            "`chroma run --path DIR --host 127.0.0.1 --port PORT`, or pass a folder as --db."
        ) from exc
    client = built["client"]
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)
    else:  # a chromadb whose HTTP client moved: requests keep Chroma's own (no) deadline
        log.warning("cannot set a request timeout on this chromadb's HTTP client")
    return client
