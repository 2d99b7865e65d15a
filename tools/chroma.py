"""Reaching a Chroma database: a folder under a file lock, or a `chroma run` server whose
every request has a deadline, with whatever fails said in one line.

An embedded database is not safe for two processes at once (Chroma's own warning), so
`connect` takes a file lock on the folder: a second process waits up to `lock_timeout`
seconds, then gets a clear `StoreError`. Many concurrent readers belong on a server, which
needs no lock. A server that does not answer within `timeout` seconds (Chroma's own client
has no deadline), one that goes away mid-run or answers with something that is not Chroma,
a database file that is not one: each is a `StoreError` with one line for the person, and
every call on the client and on the collections it hands out goes through that
translation (`Guarded`, `translated`). A folder that is not a database is never turned
into one behind the person's back: opening it to read is an error, and writing into it is
refused unless it is empty (or holds only what evident keeps beside a database).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import InternalError
from filelock import FileLock, Timeout

from evident.tools.errors import StoreError

log = logging.getLogger(__name__)

LOCK_FILE = ".evident.lock"
CHROMA_FILE = "chroma.sqlite3"
BESIDE = frozenset({LOCK_FILE, "document-images", "overlays"})  # what evident keeps in a db folder


def connect(
    db: str, *, create: bool, lock_timeout: float, timeout: float
) -> tuple[Any, str, FileLock | None]:
    """`(client, location, lock)` for `db`: a folder (embedded, locked) or `http://HOST:PORT`
    (a server, no lock). With `create=False` a missing folder is a `StoreError`, never a
    new empty database; with `create=True` a folder holding other things is refused."""
    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    if db.startswith(("http://", "https://")):
        return _http_client(db, settings, timeout), db, None
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
        raise StoreError(f"cannot lock the database {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        client = chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as exc:  # Chroma and its Rust core raise many kinds for one cause
        lock.release()
        raise StoreError(
            f"cannot open the Chroma database in {str(path)!r} ({short(exc)}); is it "
            "a database written by another Chroma version, or damaged? Pass another --db."
        ) from exc
    return client, str(path), lock


@contextmanager
def translated(location: str, timeout: float, what: str) -> Iterator[None]:
    """Chroma's failures during `what` as `StoreError`s that say what to do; refusals of
    what was asked (invalid arguments, a missing collection) pass unchanged."""
    where = f"the Chroma server at {location!r}"
    try:
        yield
    except httpx.TimeoutException as exc:
        raise StoreError(
            f"{where} did not answer within {timeout:g} s ({what}); check that it is "
            "running and not overloaded, or raise EVIDENT_CHROMA_TIMEOUT."
        ) from exc
    except (httpx.TransportError, ConnectionError) as exc:
        raise StoreError(
            f"lost {where} during {what} ({short(exc)}); what was written before is "
            "kept: run the command again once the server is back."
        ) from exc
    except (httpx.HTTPStatusError, json.JSONDecodeError) as exc:
        raise StoreError(
            f"{where} answered {what} with something that is not Chroma's "
            f"({short(exc)}); is --db the right address?"
        ) from exc
    except InternalError as exc:
        db = f"the Chroma database at {location!r}"
        raise StoreError(f"{db} failed during {what}: {short(exc)}") from exc
    except Exception as exc:
        if type(exc) is Exception:  # how Chroma's HTTP client reports a server error
            raise StoreError(f"{where} failed during {what}: {short(exc)}") from exc
        raise


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
                f"cannot make the database folder {str(path)!r}: {short(exc)}"
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


class Guarded:
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
            return Guarded(out, self._guard) if isinstance(out, Collection) else out

        return call


def short(exc: BaseException, limit: int = 200) -> str:
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
            f"cannot reach a Chroma server at {url!r} ({short(exc)}). Start one with "
            "`chroma run --path DIR --host 127.0.0.1 --port PORT`, or pass a folder as --db."
        ) from exc
    client = built["client"]
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)
    else:  # a chromadb whose HTTP client moved: requests keep Chroma's own (no) deadline
        log.warning("cannot set a request timeout on this chromadb's HTTP client")
    return client
