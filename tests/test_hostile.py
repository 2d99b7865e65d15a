"""Hostile inputs and failing parts (issue 13): the corpus of `tests/hostile/corpus.py`, run
once in its own process (`tests/hostile/run_corpus.py`, which measures each case's memory),
one test per case; then the failures that are not commands: the notebook view, the REPL,
the store's deadlines and a notebook's rendering of an error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from evident.agent.answer_html import Answer
from evident.agent.repl import Session, handle
from evident.tools.errors import InputError, StoreError
from evident.tools.ingest import captions, documents, files, metadata
from evident.tools.ingest.images import read_image
from evident.tools.store import Store
from tests.hostile.corpus import CASES
from tests.hostile.servers import FrozenServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus(chroma_server, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("hostile")
    out = base / "results.jsonl"
    cmd = [sys.executable, "-m", "tests.hostile.run_corpus", str(out), "--chroma", chroma_server,
           "--base", str(base / "cases")]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    results = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if not results:
        pytest.fail(f"the corpus runner failed (exit {done.returncode}): {done.stderr[-3000:]}")
    return {r["name"]: r for r in results}


@pytest.mark.parametrize("name", list(CASES))
def test_case(corpus, name):
    r = corpus.get(name)
    assert r is not None, "the runner stopped before this case"
    assert r["ok"], f"[{r['cls']}] {r['problem']}\n--- stderr ---\n{r['stderr']}"


def test_the_corpus_covers_every_class(corpus, capsys):
    by_class = Counter(r["cls"] for r in corpus.values())
    assert set(by_class) == {"security", "abort", "hang", "traceback", "quiet", "regression"}
    assert len(corpus) >= 70
    passed = Counter(r["cls"] for r in corpus.values() if r["ok"])
    worst = max(corpus.values(), key=lambda r: r["peak_anon_mb"] or 0)
    with capsys.disabled():  # the figures the README quotes
        print(
            f"\nhostile corpus: {sum(passed.values())}/{len(corpus)} passed; "
            + ", ".join(f"{c} {passed[c]}/{n}" for c, n in sorted(by_class.items()))
            + f"; peak anonymous memory {worst['peak_anon_mb']} MiB ({worst['name']}), "
            f"peak resident {max(r['peak_rss_mb'] or 0 for r in corpus.values())} MiB, "
            f"largest rise {max(r['growth_mb'] or 0 for r in corpus.values())} MiB"
        )


def test_doctests():
    import doctest

    for module in (captions, documents, files, metadata):
        assert doctest.testmod(module).failed == 0, module.__name__


# --- the notebook view, when a result's file changed after it was indexed -------------------


def test_the_notebook_view_survives_files_that_changed(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)
    (tmp_path / "folder.png").mkdir()
    truncated = tmp_path / "truncated.png"
    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:80])
    paths = [fifo, bomb, tmp_path / "folder.png", truncated, tmp_path / "gone.png"]
    results = tuple(
        {"rank": i, "uri": str(p), "score": 0.5, "caption": None, "regions": []}
        for i, p in enumerate(paths, 1)
    )
    answer = Answer("q", "an answer", results, {}, (), {}, (), "none", "t")
    t0 = time.monotonic()
    html = answer._repr_html_()
    assert time.monotonic() - t0 < 10
    assert html.count("(image unavailable)") == len(paths)


def test_an_error_is_one_line_in_a_notebook():
    err = StoreError("the Chroma server at 'http://x' did not answer\nwithin 1 s")
    assert err._render_traceback_() == [
        "StoreError: the Chroma server at 'http://x' did not answer within 1 s"
    ]


# --- the REPL survives what fails ---------------------------------------------------------


class _Failing:
    """An assistant whose answers fail as `exc` does."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def stream(self, question, **options):
        raise self.exc
        yield  # a generator, like the real one


def _session(assistant=None) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    return Session(assistant=assistant, console=console, err=console), buf


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (StoreError("the Chroma server at 'x' did not answer within 1 s"), "did not answer"),
        (RuntimeError("something nobody foresaw"), "unexpected RuntimeError"),
    ],
)
def test_the_repl_reports_a_failed_answer_and_goes_on(exc, says):
    session, buf = _session(_Failing(exc))
    assert handle(session, "red circles")
    assert handle(session, "/k 3")
    text = buf.getvalue()
    assert says in text and "searches return 3 results" in text and "Traceback" not in text


def test_save_to_a_missing_folder_is_a_message(tmp_path):
    session, buf = _session()
    session.last = Answer("q", "a", (), {}, (), {}, (), "none", "t")
    assert handle(session, f"/save {tmp_path / 'no' / 'such' / 'a.json'}")
    assert handle(session, f"/save {tmp_path}")  # a folder, not a file
    assert handle(session, f"/save {tmp_path / 'a.html'}")
    text = buf.getvalue()
    assert "not saved: there is no folder" in text and f"not saved: {tmp_path}" in text
    assert (tmp_path / "a.html").is_file()


# --- deadlines and bounded reads in the library ---------------------------------------------


def test_a_server_that_never_answers_is_a_store_error_within_the_timeout():
    server = FrozenServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="did not answer within 0.5 s"):
            Store.open(server.url, timeout=0.5)
        assert time.monotonic() - t0 < 3
    finally:
        server.close()


def test_reads_are_bounded_and_never_block(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(50_000)
    with pytest.raises(InputError, match="not a regular file: it is a FIFO"):
        read_image(tmp_path / "fifo.png")
    with pytest.raises(InputError, match=r"too large: 48.8 KiB, over the 1 KiB limit"):
        read_image(big, max_bytes=1024)
    with pytest.raises(InputError, match="not a regular file: it is a character device"):
        files.read_bounded("/dev/zero", 10)
