"""The soak (`make test-soak`, opt-in): an index and four concurrent searches against a
`chroma run` server that is stopped and restarted twice while they run.

Every command must end with exit status 0, or 2 and one `evident: error:` line, never a
traceback; the index is re-run until it finishes; then the collection must hold exactly
one entry per file: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_VIT
from tests.hostile.corpus import stored
from tests.hostile.servers import free_port, start_chroma, stop

EVIDENT = [sys.executable, "-m", "evident.agent.cli"]
N_IMAGES = 300
SEARCHERS = 4
ENV = os.environ | {"EVIDENT_CHROMA_TIMEOUT": "10", "HF_HUB_OFFLINE": "1"}


class Runs:
    """Every command run, with its exit status and stderr, checked at the end."""

    def __init__(self) -> None:
        self.done: list[tuple[list[str], int, str]] = []
        self.lock = threading.Lock()

    def add(self, argv: list[str], code: int, err: str) -> None:
        with self.lock:
            self.done.append((argv, code, err))

    def problems(self) -> list[str]:
        out = []
        for argv, code, err in self.done:
            errors = [line for line in err.splitlines() if line.startswith("evident: error:")]
            if "Traceback" in err or code not in (0, 2) or (code == 2 and len(errors) != 1):
                out.append(f"{argv[3:5]} exit {code}: {err[-500:]}")
        return out


def _images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:04d}.png")


def _index(folder: Path, url: str, runs: Runs, batches: threading.Event | None = None) -> int:
    """One `evident index` run; sets `batches` once it has written two batches."""
    argv = [*EVIDENT, "index", str(folder), "--db", url, "--model", TINY_VIT, "-v"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=ENV)  # fmt: skip
    err = []
    for line in proc.stderr:
        err.append(line)
        if batches is not None and "wrote batch 2/" in line:
            batches.set()
    code = proc.wait(timeout=600)
    runs.add(argv, code, "".join(err))
    return code


def _search_until(stopped: threading.Event, url: str, runs: Runs, n: int) -> None:
    while not stopped.is_set():
        argv = [*EVIDENT, "search", f"noise {n}", "--db", url, "--k", "3", "--cam", "none",
                "--json"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
        runs.add(argv, done.returncode, done.stderr)


@pytest.mark.soak
def test_index_and_searches_survive_a_server_stopped_and_restarted_twice(tmp_path, capsys):
    folder, seed = tmp_path / "imgs", tmp_path / "seed"
    data, port = tmp_path / "chroma", free_port()
    _images(folder, N_IMAGES, 0)
    _images(seed, 20, 1)  # something to search from the start
    runs = Runs()
    server, url = start_chroma(data, port)
    try:
        assert _index(seed, url, runs) == 0, runs.problems()
        stopped = threading.Event()
        searchers = [
            threading.Thread(target=_search_until, args=(stopped, url, runs, n))
            for n in range(SEARCHERS)
        ]
        for t in searchers:
            t.start()
        for _ in range(2):  # stop the server mid-index, twice
            batches = threading.Event()
            indexer = threading.Thread(target=_index, args=(folder, url, runs, batches))
            indexer.start()
            assert batches.wait(timeout=600), runs.problems()
            stop(server)
            indexer.join(timeout=600)
            time.sleep(2)  # searches meet a dead server meanwhile
            server, url = start_chroma(data, port)
        for _ in range(5):  # then index until it finishes
            if _index(folder, url, runs) == 0:
                break
        stopped.set()
        for t in searchers:
            t.join(timeout=600)
        entries = stored(url)
    finally:
        stop(server)
    assert not runs.problems(), "\n".join(runs.problems())
    uris = sorted(m["uri"] for m in entries.values())
    assert uris == sorted(str(p) for p in [*folder.iterdir(), *seed.iterdir()])  # one each
    codes = [code for _, code, _ in runs.done]
    assert codes.count(2) >= 2 and codes.count(0) >= 2  # the stops were felt, and survived
    searches = [code for argv, code, _ in runs.done if "search" in argv]
    with capsys.disabled():
        print(
            f"\nsoak: {len(codes)} commands ({len(searches)} searches, {searches.count(2)} of "
            f"them refused while the server was down), {codes.count(2)} one-line errors, 0 "
            f"tracebacks; {len(uris)} entries for {len(uris)} files"
        )
