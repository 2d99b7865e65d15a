"""The HTTP path against a real `chroma run` server on 127.0.0.1 (conftest's
`chroma_server`, shared by the session)."""

import json
from pathlib import Path

from evident.agent.cli import main
from evident.eval.scenes import make_scenes
from tests.conftest import TINY_VIT, write_scenes


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
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)}  # a shared server
    assert {"name": "served", "count": 9, "captions": 9}.items() <= listed["served"].items()
