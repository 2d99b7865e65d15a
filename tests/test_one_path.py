"""One path through the house: `evident search`, the agent's tools and `evident eval` rank
the same images and show the same checked regions for the same query."""

from __future__ import annotations

import json
from pathlib import Path

from agent_helpers import COLLECTION, build_collection

from evident.agent.assistant import Assistant
from evident.agent.cli import main
from evident.eval.per_query import RunContext, search_record
from evident.eval.suite import SuiteQuery
from evident.eval.training.clip import save_model
from evident.tools.encoders import load_encoder
from evident.tools.pipeline import open_retrieval
from evident.tools.store import Store
from tests.evidence_fixtures import trained

QUERY = "a red circle"
TOP = 3  # what the agent's policy explains


def _shown(results: list[dict]) -> list:
    return [[g["id"], g["box"], g["kind"], g["supported"]] for r in results for g in r["regions"]]


def test_cli_agent_and_evaluator_agree(tmp_path, capsys):
    spec = f"local-dir:{save_model(trained().model, 'evident-tiny-vit', tmp_path / 'm', trained())}"
    encoder = load_encoder(spec)  # loadable by a new process: the CLI
    db = build_collection(tmp_path, encoder, n=10)
    argv = ["search", QUERY, "--db", str(db), "--collection", COLLECTION, "--k", "5", "--json"]
    assert main(argv) == 0
    cli = json.loads(capsys.readouterr().out)["results"]
    with Assistant(db=db, model=encoder, collection=COLLECTION, history=":memory:") as assistant:
        agent = assistant.ask(QUERY).to_dict()["results"]
    with Store.open(db) as store:
        ctx = RunContext(encoder, [], 5, TOP, None, 0, tmp_path)
        ctx.retrieval = open_retrieval(store, COLLECTION, model=encoder)
        first = sorted((tmp_path / "images").glob("*.png"))[0]  # any relevant image will do
        query = SuiteQuery("q1", "type", QUERY, None, (first.name,), {}, {first.name: str(first)})
        record = search_record(ctx, query)
    assert [r["id"] for r in cli] == [r["id"] for r in agent]
    assert [Path(r["uri"]).name for r in cli] == [Path(p).name for p in record["ranked"][:5]]
    assert _shown(cli[:TOP]) == _shown(agent[:TOP]) == record["explained"]["shown"]
    assert _shown(cli[:TOP]), "the query has regions to compare"
