"""The HTTP path against a real `chroma run` server on 127.0.0.1, started here."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evident.agent.cli import main
from evident.eval.scenes import make_scenes
from tests.conftest import TINY_VIT, free_port, write_scenes


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-data")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import chromadb

    deadline = time.monotonic() + 60
    while True:
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma run did not start on {url}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_index_and_search_through_a_chroma_server(chroma_server, tmp_path, capsys):
    write_scenes(tmp_path / "imgs", make_scenes(9, seed=11), captions=True)
    common = ["--db", chroma_server, "--collection", "served"]
    assert main(["index", str(tmp_path / "imgs"), *common, "--model", TINY_VIT, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["indexed"] == 9
    assert main(["index", str(tmp_path / "imgs"), *common, "--json"]) == 0  # model from the db
    assert json.loads(capsys.readouterr().out)["unchanged"] == 9
    assert main(["search", "a red circle", *common, "--k", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["results"]) == 4 and res["scoring"].startswith("hybrid")
    assert all(Path(r["uri"]).parent == tmp_path / "imgs" for r in res["results"])
    assert main(["collections", "--db", chroma_server, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "served", "count": 9, "captions": 9}.items() <= listed[0].items()
