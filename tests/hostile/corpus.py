"""The hostile corpus: bad files, captions, documents, queries, databases and servers, each a
case that runs one `evident` command and says what must happen.

Every case must end with the exit status it names (0, or 2 with exactly one
`evident: error:` line that says what it names), without a traceback, within its time
limit; its `check` may look further (what was stored, what was skipped). `run_corpus.py`
runs them all in one process and measures each one's peak memory.

Classes: `security` (nothing read from outside the named paths), `abort` (a bad entry never
loses the batch), `hang` (no wait without a bound, no read without a bound), `traceback`
(one line, exit 2), `quiet` (no silent surprise), `regression` (cases that already held).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

TINY = "random:evident-tiny-vit"
SECRET = "TOP SECRET"
GB = 2**30


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str
    seconds: float
    crash: str | None = None  # the traceback of an exception that escaped `main`


@dataclass
class Run:
    """One command of a case and what must come of it."""

    argv: list[str]
    code: int = 0
    says: str = ""  # in the error line (code 2), else anywhere in stdout or stderr
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    within: float = 60.0  # seconds
    check: Callable[[Outcome], str | None] | None = None  # a problem, or None


@dataclass
class Kit:
    """What cases are built from: a folder each, the shared collection and the servers."""

    base: Path
    db: Path  # a collection "images" of six small images, without captions
    images: Path  # the files in it
    urls: dict[str, str]  # chroma (a real server), frozen, closing, garbage, dead
    chroma_port: int | None = None
    token: str = ""  # unique to this run, for collection names on the shared server
    cli: Callable[[list[str]], Outcome] | None = None  # run another command (for checks)
    proxy: Callable[..., Any] | None = None  # a CuttingProxy to the real server

    def dir(self, name: str) -> Path:
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        return d


@dataclass(frozen=True)
class Case:
    name: str
    cls: str
    build: Callable[[Kit], Run]


CASES: dict[str, Case] = {}


def case(cls: str) -> Callable:
    def register(build: Callable[[Kit], Run]) -> Callable[[Kit], Run]:
        name = build.__name__
        CASES[name] = Case(name, cls, build)
        return build

    return register


# --- helpers -------------------------------------------------------------------------------


def png(path: Path, colour=(200, 30, 30), size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def png_bytes(colour=(0, 0, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, format="PNG")
    return buf.getvalue()


def sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no disk (zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def index(folder: Path, db: Path | str, *extra: str) -> list[str]:
    return ["index", str(folder), "--db", str(db), "--model", TINY, "--json", *extra]


def search(db: Path | str, *extra: str) -> list[str]:
    return ["search", "--db", str(db), "--cam", "none", "--json", *extra]


def report(o: Outcome) -> dict:
    return json.loads(o.out)


def stored(db: Path | str, collection: str = "images") -> dict[str, dict]:
    """id -> metadata of a collection (embedded folder or server URL)."""
    from evident.tools.store import Store, iter_metadata

    with Store.open(db) as store:
        return dict(iter_metadata(store.images(collection)))


def site(kit: Kit, name: str, refs: list[str]) -> tuple[Path, Path]:
    """A folder `site` with one good image and a page showing `refs`, and beside it (outside
    what is indexed) `outside/secret.png`. Returns (site, outside)."""
    root = kit.dir(name)
    outside = root / "outside"
    png(outside / "secret.png", (1, 2, 3))
    (outside / "secret.txt").write_text(SECRET)
    png(root / "site" / "ok.png")
    tags = "".join(f'<img src="{r.format(out=outside)}" alt="leak">' for r in refs)
    (root / "site" / "page.html").write_text(f"<h1>Page</h1>{tags}", encoding="utf-8")
    return root / "site", outside


def confined(site_dir: Path, db: Path, pages: int = 1) -> Callable[[Outcome], str | None]:
    """Nothing outside `site_dir` stored; each page skipped once with a reason."""

    def check(o: Outcome) -> str | None:
        leaked = [m["uri"] for m in stored(db).values() if not m["uri"].startswith(str(site_dir))]
        if leaked:
            return f"stored from outside: {leaked}"
        skips = [s for s in report(o)["skipped"] if s["path"].endswith(".html")]
        if len(skips) != pages or not all("outside" in s["reason"] for s in skips):
            return f"expected one skip per page saying 'outside', got {skips}"
        return None

    return check


def leak_case(kit: Kit, name: str, refs: list[str]) -> Run:
    root, _ = site(kit, name, refs)
    db = kit.dir(name) / "db"
    return Run(index(root, db), check=confined(root, db))


def no_secret(db: Path) -> Callable[[Outcome], str | None]:
    def check(o: Outcome) -> str | None:
        found = [m for m in stored(db).values() if SECRET in json.dumps(m)]
        return f"outside text stored: {found}" if found else None

    return check


def meta_case(kit: Kit, name: str, record: Any, expect: Callable[[dict], str | None]) -> Run:
    """A folder of three images, one with a JSON sidecar holding `record` (raw JSON text
    when a str): all three must be indexed, and `expect(metadata of that one)` hold."""
    root = kit.dir(name)
    for i in range(3):
        png(root / "imgs" / f"{i}.png", (80 * i, 40, 40))
    text = record if isinstance(record, str) else json.dumps(record)
    (root / "imgs" / "0.json").write_text(text, encoding="utf-8")
    return Run(index(root / "imgs", root / "db"), check=_meta_check(root, expect))


def _meta_check(root: Path, expect: Callable[[dict], str | None], db=None, collection="images"):
    def check(o: Outcome) -> str | None:
        got = report(o)
        if got["indexed"] != 3:
            return f"indexed {got['indexed']} of 3: {got['skipped']}"
        metas = {Path(m["uri"]).name: m for m in stored(db or root / "db", collection).values()}
        return expect(metas["0.png"] | {"_warnings": got.get("warnings", [])})

    return check


def has(key: str, value: Any, warned: str | None = None) -> Callable[[dict], str | None]:
    def expect(meta: dict) -> str | None:
        if meta.get(key) != value:
            return f"expected {key!r} = {value!r}, metadata {meta}"
        if warned and not any(warned in w for w in meta["_warnings"]):
            return f"no warning mentioning {warned!r}: {meta['_warnings']}"
        return None

    return expect


# --- security: nothing read from outside what the person named ---------------------------


@case("security")
def html_parent_escape(kit: Kit) -> Run:
    return leak_case(kit, "html_parent_escape", ["../outside/secret.png"])


@case("security")
def html_file_url(kit: Kit) -> Run:
    return leak_case(kit, "html_file_url", ["file://{out}/secret.png"])


@case("security")
def html_percent_encoded_dots(kit: Kit) -> Run:
    return leak_case(kit, "html_percent_encoded_dots", ["%2e%2e/outside/secret.png"])


@case("security")
def html_url_with_a_tab(kit: Kit) -> Run:
    return leak_case(kit, "html_url_with_a_tab", ["fi&#9;le://{out}/secret.png"])


@case("security")
def html_through_a_symlinked_folder(kit: Kit) -> Run:
    root, outside = site(kit, "html_through_a_symlinked_folder", ["link/secret.png"])
    (root / "link").symlink_to(outside)
    db = root.parent / "db"
    return Run(index(root, db), check=confined(root, db))


@case("security")
def html_many_refs_one_reason_per_page(kit: Kit) -> Run:
    refs = ["../outside/secret.png", "file://{out}/secret.png", "{out}/secret.png"]
    root, _ = site(kit, "html_many_refs_one_reason_per_page", refs)
    (root / "two.html").write_text('<img src="../outside/secret.png">', encoding="utf-8")
    db = root.parent / "db"
    return Run(index(root, db), check=confined(root, db, pages=2))


@case("traceback")
def html_unparseable_urls(kit: Kit) -> Run:
    refs = ["http://[::1/x.png", "a%00b.png", "file:///%00.png"]
    root, _ = site(kit, "html_unparseable_urls", refs)
    db = root.parent / "db"
    return Run(index(root, db), check=lambda o: confined(root, db, pages=0)(o))


@case("quiet")
def html_ref_into_another_named_folder(kit: Kit) -> Run:
    root = kit.dir("html_ref_into_another_named_folder")
    png(root / "b" / "pic.png")
    (root / "a").mkdir()
    (root / "a" / "page.html").write_text('<h1>Shown</h1><img src="../b/pic.png">')
    db = root / "db"

    # confinement is to all the folders named; and the image is found once, with its caption
    def check(o: Outcome) -> str | None:
        caps = [m.get("caption") for m in stored(db).values()]
        return None if caps == ["Shown"] and not report(o)["skipped"] else f"{caps} {o.out}"

    argv = ["index", str(root / "a"), str(root / "b"), *index(root, db)[2:]]
    return Run(argv, check=check)


@case("regression")
def html_remote_and_host_urls(kit: Kit) -> Run:
    refs = ["file://localhost{out}/secret.png", "http://127.0.0.1:9/x.png", "//evil/x.png"]
    root, _ = site(kit, "html_remote_and_host_urls", refs)
    db = root.parent / "db"
    return Run(index(root, db), check=lambda o: confined(root, db, pages=0)(o))


@case("security")
def symlinked_image_to_outside(kit: Kit) -> Run:
    root, outside = site(kit, "symlinked_image_to_outside", [])
    (root / "evil.png").symlink_to(outside / "secret.png")
    db = root.parent / "db"

    def check(o: Outcome) -> str | None:
        skips = {Path(s["path"]).name: s["reason"] for s in report(o)["skipped"]}
        if "outside" not in skips.get("evil.png", ""):
            return f"evil.png not skipped as outside: {skips}"
        return confined(root, db, pages=0)(o)

    return Run(index(root, db), check=check)


@case("security")
def symlinked_sidecar_to_outside(kit: Kit) -> Run:
    root, outside = site(kit, "symlinked_sidecar_to_outside", [])
    (root / "ok.txt").symlink_to(outside / "secret.txt")
    return Run(index(root, root.parent / "db"), check=no_secret(root.parent / "db"))


@case("security")
def symlinked_captions_jsonl_to_outside(kit: Kit) -> Run:
    root, outside = site(kit, "symlinked_captions_jsonl_to_outside", [])
    (outside / "captions.jsonl").write_text(json.dumps({"file": "ok.png", "caption": SECRET}))
    (root / "captions.jsonl").symlink_to(outside / "captions.jsonl")
    return Run(index(root, root.parent / "db"), check=no_secret(root.parent / "db"))


# --- abort: metadata Chroma refuses never loses the batch --------------------------------


@case("abort")
def key_empty(kit: Kit) -> Run:
    return meta_case(kit, "key_empty", {"": "x", "kind": "ok"}, has("kind", "ok", "''"))


@case("abort")
def key_chroma_prefix(kit: Kit) -> Run:
    return meta_case(kit, "key_chroma_prefix", {"chroma:x": 1}, has("meta_chroma:x", 1, "chroma:"))


@case("abort")
def key_chroma_document(kit: Kit) -> Run:
    record = {"chroma:document": "x"}
    return meta_case(kit, "key_chroma_document", record, has("meta_chroma:document", "x"))


@case("abort")
def key_hash(kit: Kit) -> Run:
    return meta_case(kit, "key_hash", {"#x": 1}, has("meta_#x", 1, "#x"))


@case("abort")
def key_dollar(kit: Kit) -> Run:
    return meta_case(kit, "key_dollar", {"$and": 1}, has("meta_$and", 1, "$and"))


@case("abort")
def key_empty_in_captions_jsonl(kit: Kit) -> Run:
    root = kit.dir("key_empty_in_captions_jsonl")
    for i in range(3):
        png(root / "imgs" / f"{i}.png", (80 * i, 40, 40))
    line = {"file": "0.png", "caption": "red", "": 1, "kind": "ok"}
    (root / "imgs" / "captions.jsonl").write_text(json.dumps(line) + "\n")
    return Run(index(root / "imgs", root / "db"), check=_meta_check(root, has("kind", "ok", "''")))


@case("abort")
def int_beyond_64_bits(kit: Kit) -> Run:
    big = 2**70
    return meta_case(kit, "int_beyond_64_bits", {"big": big}, has("big", str(big), "64"))


@case("abort")
def int_beyond_64_bits_on_a_server(kit: Kit) -> Run:
    root = kit.dir("int_beyond_64_bits_on_a_server")
    for i in range(3):
        png(root / "imgs" / f"{i}.png", (80 * i, 40, 40))
    (root / "imgs" / "0.json").write_text(json.dumps({"big": 2**70, "neg": -(2**64)}))
    url, name = kit.urls["chroma"], f"bigints-{kit.token}"
    check = _meta_check(root, has("big", str(2**70), "64"), db=url, collection=name)
    return Run(index(root / "imgs", url, "--collection", name), check=check)


@case("abort")
def nan_and_infinity(kit: Kit) -> Run:
    text = '{"x": NaN, "y": Infinity, "kind": "ok"}'
    expect = has("kind", "ok", "finite")
    return meta_case(kit, "nan_and_infinity", text, lambda m: expect(m) or _absent(m, "x", "y"))


def _absent(meta: dict, *keys: str) -> str | None:
    there = [k for k in keys if k in meta]
    return f"stored {there}" if there else None


@case("abort")
def lone_surrogates(kit: Kit) -> Run:
    text = '{"caption": "bad \\udc80 caption", "note": "x\\ud800y", "kind": "ok"}'
    return meta_case(kit, "lone_surrogates", text, has("note", "x\ufffdy"))


@case("regression")
def lists_mixed_and_empty(kit: Kit) -> Run:
    record = {"a": ["x", 1], "b": [], "c": ["p", "q"], "d": {"nested": 1}}
    return meta_case(kit, "lists_mixed_and_empty", record, has("c", ["p", "q"]))


@case("abort")
def server_dies_mid_index(kit: Kit) -> Run:
    root = kit.dir("server_dies_mid_index")
    for i in range(70):
        png(root / "imgs" / f"{i:02d}.png", (3 * i, 100, 250 - 3 * i))
    proxy = kit.proxy(kit.chroma_port, b"/upsert", 2)
    url, name = kit.urls["chroma"], f"dies-{kit.token}"

    def check(o: Outcome) -> str | None:
        again = kit.cli(index(root / "imgs", url, "--collection", name))
        if again.code != 0:
            return f"re-run against the live server failed: {again.err[-300:]}"
        metas = stored(url, name)
        uris = [m["uri"] for m in metas.values()]
        if len(uris) != 70 or len(set(uris)) != 70:
            return f"after the re-run: {len(uris)} entries, {len(set(uris))} files (want 70)"
        return None

    argv = index(root / "imgs", proxy.url, "--collection", name)
    return Run(argv, code=2, says="Chroma server", check=check)


# --- hang: bounded waits and bounded reads -------------------------------------------------


@case("hang")
def query_fifo(kit: Kit) -> Run:
    fifo = kit.dir("query_fifo") / "q.png"
    os.mkfifo(fifo)
    return Run(search(kit.db, "--image", str(fifo)), code=2, says="regular file", within=20)


@case("hang")
def query_char_device(kit: Kit) -> Run:
    return Run(search(kit.db, "--image", "/dev/zero"), code=2, says="regular file", within=20)


@case("hang")
def query_link_to_char_device(kit: Kit) -> Run:
    link = kit.dir("query_link_to_char_device") / "q.png"
    link.symlink_to("/dev/zero")
    return Run(search(kit.db, "--image", str(link)), code=2, says="regular file", within=20)


@case("hang")
def query_2gb_not_image(kit: Kit) -> Run:
    q = sparse(kit.dir("query_2gb_not_image") / "q.png", 2 * GB)
    return Run(search(kit.db, "--image", str(q)), code=2, says="too large", within=20)


@case("hang")
def query_100mb_not_image(kit: Kit) -> Run:
    q = sparse(kit.dir("query_100mb_not_image") / "q.png", 100 * 2**20)
    return Run(search(kit.db, "--image", str(q)), code=2, says="not an image", within=20)


@case("hang")
def ask_query_2gb(kit: Kit) -> Run:
    q = sparse(kit.dir("ask_query_2gb") / "q.png", 2 * GB)
    argv = ["ask", "what is it?", "--image", str(q), "--db", str(kit.db), "--json"]
    return Run(argv, code=2, says="too large", within=20)


def skipped_as(name: str, reason: str) -> Callable[[Outcome], str | None]:
    def check(o: Outcome) -> str | None:
        got = report(o)
        skips = {Path(s["path"]).name: s["reason"] for s in got["skipped"]}
        if reason not in skips.get(name, ""):
            return f"{name} not skipped with {reason!r}: {skips}"
        if got["indexed"] != 1:
            return f"indexed {got['indexed']}, want the one good image"
        return None

    return check


def folder_with(kit: Kit, name: str, make: Callable[[Path], Any]) -> Path:
    root = kit.dir(name) / "imgs"
    png(root / "ok.png")
    make(root)
    return root


@case("hang")
def index_fifo_named_png(kit: Kit) -> Run:
    root = folder_with(kit, "index_fifo_named_png", lambda r: os.mkfifo(r / "fifo.png"))
    return Run(index(root, root.parent / "db"), check=skipped_as("fifo.png", "regular file"))


@case("hang")
def index_link_to_dev_zero(kit: Kit) -> Run:
    make = lambda r: (r / "z.png").symlink_to("/dev/zero")  # noqa: E731
    root = folder_with(kit, "index_link_to_dev_zero", make)
    return Run(index(root, root.parent / "db"), check=skipped_as("z.png", "not"))


@case("hang")
def index_2gb_png(kit: Kit) -> Run:
    root = folder_with(kit, "index_2gb_png", lambda r: sparse(r / "big.png", 2 * GB))
    return Run(index(root, root.parent / "db"), check=skipped_as("big.png", "too large"))


@case("hang")
def index_100mb_not_image(kit: Kit) -> Run:
    root = folder_with(kit, "index_100mb_not_image", lambda r: sparse(r / "z.png", 100 * 2**20))
    return Run(index(root, root.parent / "db"), check=skipped_as("z.png", "not an image"))


@case("hang")
def index_2gb_html(kit: Kit) -> Run:
    root = folder_with(kit, "index_2gb_html", lambda r: sparse(r / "page.html", 2 * GB))
    return Run(index(root, root.parent / "db"), check=skipped_as("page.html", "too large"))


@case("hang")
def index_2gb_captions_jsonl(kit: Kit) -> Run:
    make = lambda r: sparse(r / "captions.jsonl", 2 * GB)  # noqa: E731
    root = folder_with(kit, "index_2gb_captions_jsonl", make)
    return Run(index(root, root.parent / "db"), check=skipped_as("captions.jsonl", "too large"))


FROZEN_ENV = {"EVIDENT_CHROMA_TIMEOUT": "0.5"}


@case("hang")
def search_frozen_server(kit: Kit) -> Run:
    argv = search(kit.urls["frozen"], "red")
    return Run(argv, code=2, says="did not answer", env=FROZEN_ENV, within=15)


@case("hang")
def index_frozen_server(kit: Kit) -> Run:
    argv = index(kit.images, kit.urls["frozen"])
    return Run(argv, code=2, says="did not answer", env=FROZEN_ENV, within=15)


@case("hang")
def collections_frozen_server(kit: Kit) -> Run:
    argv = ["collections", "--db", kit.urls["frozen"]]
    return Run(argv, code=2, says="did not answer", env=FROZEN_ENV, within=15)


@case("hang")
def ask_frozen_server(kit: Kit) -> Run:
    argv = ["ask", "red", "--db", kit.urls["frozen"]]
    return Run(argv, code=2, says="did not answer", env=FROZEN_ENV, within=15)


@case("regression")
def search_server_that_hangs_up(kit: Kit) -> Run:
    return Run(search(kit.urls["closing"], "red"), code=2, says="Chroma server", within=15)


@case("regression")
def search_server_that_is_not_chroma(kit: Kit) -> Run:
    return Run(search(kit.urls["garbage"], "red"), code=2, says="Chroma server", within=15)


@case("regression")
def search_dead_server(kit: Kit) -> Run:
    return Run(search(kit.urls["dead"], "red"), code=2, says="cannot reach", within=15)


@case("regression")
def ask_dead_server(kit: Kit) -> Run:
    argv = ["ask", "red", "--db", kit.urls["dead"]]
    return Run(argv, code=2, says="cannot reach", within=15)


# --- traceback: one line and exit status 2 --------------------------------------------------


@case("traceback")
def db_is_a_file(kit: Kit) -> Run:
    f = kit.dir("db_is_a_file") / "db"
    f.write_text("not a folder")
    return Run(index(kit.images, f), code=2, says="not a folder")


@case("traceback")
def db_corrupt_sqlite_search(kit: Kit) -> Run:
    db = kit.dir("db_corrupt_sqlite_search") / "db"
    db.mkdir()
    (db / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    return Run(search(db, "red"), code=2, says="cannot open")


@case("traceback")
def db_corrupt_sqlite_index(kit: Kit) -> Run:
    db = kit.dir("db_corrupt_sqlite_index") / "db"
    db.mkdir()
    (db / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    return Run(index(kit.images, db), code=2, says="cannot open")


@case("traceback")
def search_out_is_a_file(kit: Kit) -> Run:
    out = kit.dir("search_out_is_a_file") / "out"
    out.write_text("a file")
    argv = ["search", "red", "--db", str(kit.db), "--out", str(out), "--k", "2"]
    return Run(argv, code=2, says=str(out))


@case("traceback")
def ask_history_not_sqlite(kit: Kit) -> Run:
    h = kit.dir("ask_history_not_sqlite") / "h.sqlite"
    h.write_bytes(b"not sqlite at all" * 200)
    argv = ["ask", "red", "--db", str(kit.db), "--history", str(h), "--thread", "t"]
    return Run(argv, code=2, says="conversation")


def suite(kit: Kit, name: str, data: bytes) -> Path:
    path = kit.dir(name) / "suite.jsonl"
    path.write_bytes(data)
    return path


def evaluate(kit: Kit, suite_path: Path, *extra: str) -> list[str]:
    out = suite_path.parent / "report"
    return ["eval", str(suite_path), "--db", str(kit.db), "--out", str(out), "--json", *extra]


@case("traceback")
def eval_suite_not_utf8(kit: Kit) -> Run:
    path = suite(kit, "eval_suite_not_utf8", b'{"id": "q1", "query": "\xff\xfe"}\n')
    return Run(evaluate(kit, path), code=2, says="UTF-8")


@case("regression")
def eval_suite_fifo(kit: Kit) -> Run:
    path = kit.dir("eval_suite_fifo") / "suite.jsonl"
    os.mkfifo(path)
    return Run(evaluate(kit, path), code=2, says="suite", within=20)


def good_suite(kit: Kit, name: str) -> Path:
    first = sorted(kit.images.glob("*.png"))[0]
    line = {"id": "q1", "query": "red", "relevant": [str(first)]}
    return suite(kit, name, (json.dumps(line) + "\n").encode())


@case("traceback")
def eval_out_is_a_file(kit: Kit) -> Run:
    path = good_suite(kit, "eval_out_is_a_file")
    (path.parent / "report").write_text("a file")
    return Run(evaluate(kit, path, "--methods", "legrad"), code=2, says="report")


@case("hang")
def eval_frozen_server(kit: Kit) -> Run:
    path = good_suite(kit, "eval_frozen_server")
    argv = ["eval", str(path), "--db", kit.urls["frozen"], "--out", str(path.parent / "r")]
    return Run(argv, code=2, says="did not answer", env=FROZEN_ENV, within=15)


@case("traceback")
def bad_limit_in_the_environment(kit: Kit) -> Run:
    env = {"EVIDENT_MAX_IMAGE_BYTES": "lots"}
    return Run(search(kit.db, "red"), code=2, says="EVIDENT_MAX_IMAGE_BYTES", env=env)


def chat(db: Path | str, lines: list[str]) -> tuple[list[str], str]:
    return ["chat", "--db", str(db), "--history", ":memory:"], "\n".join(lines) + "\n"


@case("traceback")
def chat_survives_a_frozen_server(kit: Kit) -> Run:
    argv, stdin = chat(kit.urls["frozen"], ["red circles", "/k 3", "/exit"])

    def check(o: Outcome) -> str | None:
        if "did not answer" not in o.out or "searches return 3 results" not in o.out:
            return f"the REPL did not report the error and go on: {o.out[-400:]}"
        return None

    return Run(argv, stdin=stdin, env=FROZEN_ENV, within=20, check=check)


@case("traceback")
def chat_save_to_a_missing_folder(kit: Kit) -> Run:
    missing = kit.base / "no" / "such" / "folder" / "a.json"
    argv, stdin = chat(kit.db, ["red", f"/save {missing}", "/k 3", "/exit"])

    def check(o: Outcome) -> str | None:
        if "not saved" not in o.out or "searches return 3 results" not in o.out:
            return f"/save did not fail softly: {o.out[-400:]}"
        return None

    return Run(argv, stdin=stdin, check=check)


# --- quiet: no silent surprises ------------------------------------------------------------


@case("quiet")
def caption_of_10_mb(kit: Kit) -> Run:
    root = kit.dir("caption_of_10_mb")
    png(root / "imgs" / "a.png")
    (root / "imgs" / "a.txt").write_text("word " * 2_000_000)
    db = root / "db"

    def check(o: Outcome) -> str | None:
        (meta,) = stored(db).values()
        n, cut = len(meta.get("caption", "")), meta.get("caption_chars")
        if n > 2000 or cut != 9_999_999:
            return f"caption of {n} characters, cut recorded: {cut}"
        if not any("cut" in w for w in report(o).get("warnings", [])):
            return "no warning about the cut caption"
        found = kit.cli(search(db, "word"))
        if found.code != 0 or len(found.out) > 100_000:
            return f"search --json: exit {found.code}, {len(found.out)} characters"
        return None

    return Run(index(root / "imgs", db), check=check)


@case("quiet")
def captions_jsonl_with_a_folder_part(kit: Kit) -> Run:
    root = kit.dir("captions_jsonl_with_a_folder_part") / "imgs"
    png(root / "b.png", (10, 10, 10))
    png(root / "sub" / "b.png", (250, 250, 250))
    (root / "captions.jsonl").write_text(json.dumps({"file": "sub/b.png", "caption": "deep"}))

    def check(o: Outcome) -> str | None:
        caps = {m["uri"]: m.get("caption") for m in stored(root.parent / "db").values()}
        want = {str(root / "b.png"): None, str(root / "sub" / "b.png"): "deep"}
        return None if caps == want else f"captions {caps}, want {want}"

    return Run(index(root, root.parent / "db"), check=check)


@case("quiet")
def captions_jsonl_line_with_a_bom(kit: Kit) -> Run:
    root = kit.dir("captions_jsonl_line_with_a_bom") / "imgs"
    png(root / "a.png")
    png(root / "b.png", (0, 200, 0))
    lines = ["\ufeff" + json.dumps({"file": "a.png", "caption": "first"}),
             "\ufeff" + json.dumps({"file": "b.png", "caption": "second"})]  # fmt: skip
    (root / "captions.jsonl").write_text("\n".join(lines), encoding="utf-8")

    def check(o: Outcome) -> str | None:
        caps = sorted(m.get("caption") or "" for m in stored(root.parent / "db").values())
        return None if caps == ["first", "second"] else f"captions {caps}"

    return Run(index(root, root.parent / "db"), check=check)


@case("quiet")
def captions_jsonl_bad_lines_are_reported(kit: Kit) -> Run:
    root = kit.dir("captions_jsonl_bad_lines_are_reported") / "imgs"
    png(root / "a.png")
    lines = [json.dumps({"file": "a.png", "caption": "fine"}), "not json", "[1, 2]", "{}"]
    (root / "captions.jsonl").write_text("\n".join(lines))

    def check(o: Outcome) -> str | None:
        said = [s for s in report(o)["skipped"] if s["path"].endswith("captions.jsonl")]
        if not said or "2, 3, 4" not in said[0]["reason"]:
            return f"bad lines not reported: {report(o)['skipped']}"
        return None

    return Run(index(root, root.parent / "db"), check=check)


@case("quiet")
def meta_uri_collides_with_uri(kit: Kit) -> Run:
    record = {"uri": "from-uri", "meta_uri": "from-meta-uri"}
    expect = has("meta_uri", "from-meta-uri", "uri")
    return meta_case(kit, "meta_uri_collides_with_uri", record, expect)


@case("quiet")
def too_many_keys(kit: Kit) -> Run:
    record = {f"k{i:03d}": i for i in range(200)}

    def expect(meta: dict) -> str | None:
        user = [k for k in meta if k.startswith("k")]
        if len(user) != 64 or not any("64" in w for w in meta["_warnings"]):
            return f"{len(user)} keys kept, warnings {meta['_warnings']}"
        return None

    return meta_case(kit, "too_many_keys", record, expect)


@case("quiet")
def long_metadata_value(kit: Kit) -> Run:
    def expect(meta: dict) -> str | None:
        n = len(meta.get("note", ""))
        return None if 0 < n <= 1000 else f"note has {n} characters"

    return meta_case(kit, "long_metadata_value", {"note": "x" * 1_000_000}, expect)


@case("quiet")
def ask_k_over_the_limit(kit: Kit) -> Run:
    argv = ["ask", "red", "--db", str(kit.db), "--k", "100000"]
    return Run(argv, code=2, says="--k: must be from 1 to 1000")


@case("regression")
def search_k_over_the_limit(kit: Kit) -> Run:
    return Run(search(kit.db, "red", "--k", "100000"), code=2, says="--k: must be from 1 to 1000")


def untouched(folder: Path, before: set[str]) -> Callable[[Outcome], str | None]:
    def check(o: Outcome) -> str | None:
        now = {p.name for p in folder.iterdir()}
        return None if now == before else f"left behind: {sorted(now - before)}"

    return check


def foreign(kit: Kit, name: str) -> Path:
    folder = kit.dir(name) / "someone-elses"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    return folder


@case("quiet")
def db_foreign_folder_index(kit: Kit) -> Run:
    folder = foreign(kit, "db_foreign_folder_index")
    check = untouched(folder, {"notes.txt", "data.csv"})
    return Run(index(kit.images, folder), code=2, says="not an evident database", check=check)


@case("quiet")
def db_foreign_folder_search(kit: Kit) -> Run:
    folder = foreign(kit, "db_foreign_folder_search")
    check = untouched(folder, {"notes.txt", "data.csv"})
    return Run(search(folder, "red"), code=2, says="no evident database", check=check)


@case("quiet")
def index_no_images(kit: Kit) -> Run:
    root = kit.dir("index_no_images")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    db = root / "db"

    def check(o: Outcome) -> str | None:
        return f"{db} was created" if db.exists() else None

    return Run(index(root / "empty", db), code=2, says="no images found", check=check)


@case("quiet")
def index_one_path_without_images(kit: Kit) -> Run:
    root = kit.dir("index_one_path_without_images")
    (root / "empty").mkdir()
    png(root / "imgs" / "a.png")
    argv = ["index", str(root / "imgs"), str(root / "empty"), *index(root, root / "db")[2:]]
    return Run(argv, says="no images under")


# --- regression: bad images and queries that already held -----------------------------------


@case("regression")
def bad_image_files(kit: Kit) -> Run:
    root = kit.dir("bad_image_files") / "imgs"
    png(root / "ok.png")
    good = png_bytes()
    (root / "zero.png").write_bytes(b"")
    (root / "text.jpg").write_bytes(b"this is not an image, only words")
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")
    (root / "bomb.png").write_bytes(buf.getvalue())
    want = {"zero.png": "empty", "text.jpg": "not an image", "truncated.png": "truncated",
            "bomb.png": "decompression bomb"}  # fmt: skip

    def check(o: Outcome) -> str | None:
        got = {Path(s["path"]).name: s["reason"] for s in report(o)["skipped"]}
        bad = {n: got.get(n) for n, why in want.items() if why not in (got.get(n) or "")}
        return f"reasons {bad}" if bad else None

    return Run(index(root, root.parent / "db"), check=check)


@case("regression")
def query_not_an_image(kit: Kit) -> Run:
    q = kit.dir("query_not_an_image") / "q.png"
    q.write_text("words, not pixels")
    return Run(search(kit.db, "--image", str(q)), code=2, says="not an image")


@case("regression")
def query_bomb(kit: Kit) -> Run:
    q = kit.dir("query_bomb") / "q.png"
    Image.new("1", (9000, 9000)).save(q)
    return Run(search(kit.db, "--image", str(q)), code=2, says="decompression bomb")


@case("regression")
def query_folder(kit: Kit) -> Run:
    return Run(search(kit.db, "--image", str(kit.base)), code=2, says="regular file")


@case("regression")
def where_not_json(kit: Kit) -> Run:
    return Run(search(kit.db, "red", "--where", "{kind"), code=2, says="--where")


@case("regression")
def where_bad_operator(kit: Kit) -> Run:
    argv = search(kit.db, "red", "--where", '{"kind": {"$regex": ".*"}}')
    return Run(argv, code=2, says="invalid --where")


@case("regression")
def empty_query(kit: Kit) -> Run:
    return Run(search(kit.db, ""), code=2, says="give words")


@case("regression")
def huge_text_query(kit: Kit) -> Run:
    return Run(search(kit.db, "red " * 25_000, "--k", "2"))


@case("regression")
def control_characters_in_a_query(kit: Kit) -> Run:
    return Run(search(kit.db, "red\x00\x1b[31m\u202e circles", "--k", "2"))


@case("regression")
def bad_collection_name(kit: Kit) -> Run:
    return Run(search(kit.db, "red", "--collection", "../../etc"), code=2, says="not allowed")
