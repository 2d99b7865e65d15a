import doctest
import os
import shutil
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from evident.agent.cli import main
from evident.agent.render import index_summary
from evident.eval.scenes import make_scenes
from evident.tools.errors import EncoderMismatchError, StoreError
from evident.tools.ingest import looks
from evident.tools.ingest.index import index_paths
from evident.tools.records import IndexReport
from evident.tools.store import Store, iter_metadata
from tests.conftest import TINY_VIT, write_scenes
from tests.test_images import write_bad_corpus

EVIDENT = [sys.executable, "-m", "evident.agent.cli"]


def entries(db: Path, name="images") -> dict[str, dict]:
    with Store.open(db) as store:
        return dict(iter_metadata(store.images(name)))


def run_index(db, folder, encoder, text=None, **kw):
    with Store.open(db, create=True) as store:
        return index_paths(
            [folder], store=store, encoder=encoder, collection="images", text_embedder=text, **kw
        )


def test_doctests():
    assert doctest.testmod(looks).failed == 0


def test_bad_inputs_are_skipped_with_reasons_and_good_ones_kept(tmp_path, tiny_encoder):
    folder = tmp_path / "imgs"
    good = write_scenes(folder, make_scenes(7, seed=1))
    expected = write_bad_corpus(folder / "bad")
    report = run_index(tmp_path / "db", folder, tiny_encoder)
    assert report.indexed == 7
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == set(expected)
    for name, why in expected.items():
        assert why in reasons[name]
    stored = {m["uri"] for m in entries(tmp_path / "db").values()}
    assert stored == {str(p) for p in good}


def test_reindex_is_idempotent_and_incremental(tmp_path, tiny_encoder, text_embedder):
    folder = tmp_path / "imgs"
    paths = write_scenes(folder, make_scenes(6, seed=2), captions=True)
    db = tmp_path / "db"
    first = run_index(db, folder, tiny_encoder, text_embedder)
    assert (first.indexed, first.unchanged) == (6, 0)
    before = entries(db)
    again = run_index(db, folder, tiny_encoder, text_embedder)
    assert (again.indexed, again.unchanged, again.moved) == (0, 6, 0)
    assert entries(db) == before

    # a moved file keeps its id; a changed caption updates the record, not the id
    moved = folder / "sub" / "moved.png"
    moved.parent.mkdir()
    shutil.move(paths[0], moved)
    paths[1].with_suffix(".txt").write_text("a new caption")
    paths[2].with_suffix(".txt").unlink()
    report = run_index(db, folder, tiny_encoder, text_embedder)
    assert report.moved == 1 and report.indexed == 0
    after = entries(db)
    assert set(after) == set(before)
    uris = {m["uri"]: m for m in after.values()}
    assert str(moved) in uris and str(paths[0]) not in uris
    assert uris[str(paths[1])]["caption"] == "a new caption"
    assert "caption" not in uris[str(paths[2])] or not uris[str(paths[2])]["caption"]
    with Store.open(db) as store:
        # the moved file left its sidecar behind, and one sidecar was deleted
        assert store.captions("images").count() == 4

    # deleted files go only on request
    paths[3].unlink()
    assert run_index(db, folder, tiny_encoder, text_embedder).pruned == 0
    assert len(entries(db)) == 6
    assert run_index(db, folder, tiny_encoder, text_embedder, prune=True).pruned == 1
    assert len(entries(db)) == 5


def test_encoder_mismatch_is_refused(tmp_path, tiny_encoder):
    from evident.tools.encoders import load_encoder

    folder = tmp_path / "imgs"
    write_scenes(folder, make_scenes(2, seed=3))
    run_index(tmp_path / "db", folder, tiny_encoder)
    other = load_encoder("random:evident-tiny-rn")
    with pytest.raises(
        EncoderMismatchError, match="indexed with encoder 'random:evident-tiny-vit'"
    ):
        run_index(tmp_path / "db", folder, other)


def test_kill_9_mid_run_then_rerun_gives_one_entry_per_good_file(tmp_path, capsys):
    folder = tmp_path / "imgs"
    write_scenes(folder, make_scenes(200, seed=4))
    write_bad_corpus(folder / "bad")
    db = tmp_path / "db"
    cmd = [*EVIDENT, "index", str(folder), "--db", str(db), "--model", TINY_VIT, "-v"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "wrote batch 3/" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = entries(db)
    assert 0 < len(partial) < 200
    assert main([*cmd[3:-1], "--json"]) == 0, capsys.readouterr().err  # the rerun, in this process
    final = entries(db)
    assert len(final) == 200
    assert len({m["uri"] for m in final.values()}) == 200


def test_second_writer_waits_then_fails_clearly_and_never_corrupts(tmp_path, tiny_encoder):
    folder = tmp_path / "imgs"
    write_scenes(folder, make_scenes(5, seed=5))
    db = tmp_path / "db"
    run_index(db, folder, tiny_encoder)
    cmd = [*EVIDENT, "index", str(folder), "--db", str(db), "--model", TINY_VIT]
    with Store.open(db):  # this process holds the database
        t0 = time.monotonic()
        # Both start together (their start-up is most of the time): one gives up, one waits.
        waiter = subprocess.Popen([*cmd, "--lock-timeout", "120", "--json"], stdout=subprocess.PIPE)
        blocked = subprocess.run(
            [*cmd, "--lock-timeout", "1"], capture_output=True, text=True, timeout=120
        )
        assert blocked.returncode == 2
        assert "in use by another evident process" in blocked.stderr
        assert "Traceback" not in blocked.stderr
        assert waiter.poll() is None  # still waiting for the lock
    assert waiter.wait(timeout=120) == 0
    assert time.monotonic() - t0 > 1
    assert len(entries(db)) == 5


def test_store_errors_are_clear(tmp_path):
    with pytest.raises(StoreError, match="no evident database at"):
        Store.open(tmp_path / "missing")
    with Store.open(tmp_path / "db", create=True) as store:
        with pytest.raises(StoreError, match="no collection 'nope'"):
            store.images("nope")
        with pytest.raises(StoreError, match="is not allowed"):
            store.images("a")
    with pytest.raises(StoreError, match="cannot reach a Chroma server"):
        Store.open("http://127.0.0.1:9")
    assert not os.path.exists(tmp_path / "missing")


def test_the_summary_says_what_was_brought_up_to_date_only_when_something_was():
    def said(report):
        out = StringIO()
        index_summary(Console(file=out, width=200), report, "figs")
        return out.getvalue().strip()

    refreshed = IndexReport("figs", "bundled:evident-figures", unchanged=2, refreshed=998)
    assert said(refreshed).startswith("figs: 0 indexed, 2 unchanged, 998 refreshed, 0 moved")
    assert "refreshed" not in said(IndexReport("figs", "bundled:evident-figures", indexed=3))
    assert refreshed.to_dict()["refreshed"] == 998
