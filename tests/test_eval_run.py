"""`evident eval` end to end on generated figures and a tiny random model: the report's keys
and ranges, determinism, resuming after a kill, refusing mixed settings, ask mode."""

import json
import math
import shutil
from pathlib import Path

import pytest

from evident.agent.assistant import Assistant
from evident.agent.cli import main
from evident.eval.run_eval import run_eval
from evident.eval.sanity import SANITY_KEYS
from evident.tools.errors import InputError
from tests.conftest import TINY_VIT

METHODS = ["legrad", "gradcam", "random", "centre"]
RETRIEVAL = {"recall@1", "recall@5", "recall@10", "precision@5", "capped_precision@5", "mrr",
             "ndcg@10"}  # fmt: skip
LOCALIZATION = {
    "pointing_game",
    "pointing_game_15px",
    "pointing_game_patches",
    "energy_pointing_game",
    "iou",
    "deletion_auc",
    "insertion_auc",
    "supported_share",
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """30 generated figures, a small suite over the test split (every level, 3 component
    queries), and the split indexed with the tiny model."""
    from evident.eval.figures.generate import generate_figures
    from evident.tools.encoders import load_encoder
    from evident.tools.ingest.index import index_paths
    from evident.tools.store import Store

    root = tmp_path_factory.mktemp("figbench")
    generate_figures(root / "figs", 30, seed=0, workers=1)
    rows = [json.loads(line) for line in (root / "figs" / "test.jsonl").read_text().splitlines()]
    per_level = {"caption": 2, "type": 1, "attribute": 2, "component": 3}
    small = []
    for row in rows:
        if per_level.get(row["level"], 0) > 0:
            per_level[row["level"]] -= 1
            small.append(row)
    suite = root / "figs" / "small.jsonl"
    suite.write_text("".join(json.dumps(r) + "\n" for r in small))
    db = root / "db"
    with Store.open(db, create=True) as store:
        index_paths(
            [root / "figs" / "images" / "test"],
            store=store,
            encoder=load_encoder(TINY_VIT),
            collection="figs",
        )
    return {"root": root, "suite": suite, "db": db, "n": len(small)}


def _run(bench, out, **kw):
    args = {"db": bench["db"], "collection": "figs", "methods": METHODS, "out_dir": out}
    return run_eval(bench["suite"], **(args | kw))


@pytest.fixture(scope="module")
def first(bench):
    return _run(bench, bench["root"] / "run1")


def _without_latency(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "latency_ms"}


def test_report_keys_and_ranges(first, bench):
    data = json.loads((bench["root"] / "run1" / "report.json").read_text())
    assert first.evaluated == bench["n"] and data["n_queries"] == bench["n"]
    assert set(data["retrieval"]) >= RETRIEVAL
    assert set(data["retrieval_by_level"]) == {"caption", "type", "attribute", "component"}
    for values in [data["retrieval"], *data["retrieval_by_level"].values()]:
        assert all(0 <= values[k] <= 1 for k in RETRIEVAL)
    assert set(data["localization"]) == set(METHODS)
    for method, values in data["localization"].items():
        assert set(values) == LOCALIZATION, method
        for k in ("pointing_game", "pointing_game_15px", "energy_pointing_game", "iou"):
            assert 0 <= values[k] <= 1
        assert values["pointing_game_15px"] >= values["pointing_game"]  # tolerance only adds
        # a share of regions: None when a method's maps had no compact peak at all
        assert values["supported_share"] is None or 0 <= values["supported_share"] <= 1
        assert math.isfinite(values["deletion_auc"]) and math.isfinite(values["insertion_auc"])
        for k, ci in data["localization_ci"][method].items():
            if values[k] is not None:
                assert ci[0] <= values[k] + 1e-9 and values[k] <= ci[1] + 1e-9
    assert data["localization_n"]["queries"] == 3
    # the randomization test, for the methods that explain the model only
    assert set(data["sanity"]) == {"legrad", "gradcam"}
    for method, values in data["sanity"].items():
        assert set(values) == set(SANITY_KEYS), method
        assert all(v is None or -1 <= v <= 1 for v in values.values()), method
    assert data["sanity_n"]["legrad"]["randomized_all_rank_corr"] > 0
    versus = data["localization_vs_baselines"]["legrad"]["centre"]["pointing_game"]
    assert set(versus) == {"diff", "ci95"}
    assert 0 < data["latency_ms"]["p50"] <= data["latency_ms"]["p95"]
    assert data["latency_ms"]["explain"]["p50"] > 0
    share = data["explained"]["supported_share"]
    assert share is None or 0 <= share <= 1
    for f in first.files:
        assert f.stat().st_size > 0
    md = (bench["root"] / "run1" / "report.md").read_text()
    assert "| legrad (default) |" in md and "Difference to the best baseline" in md
    assert "### Sanity" in md
    pairs = " / ".join(str(data["sanity_n"]["legrad"][k]) for k in SANITY_KEYS)
    assert any(r.startswith("| legrad |") and r.endswith(f"| {pairs} |") for r in md.splitlines())


def test_cli_run_is_deterministic(first, bench, capsys):
    out = bench["root"] / "run2"
    argv = ["eval", str(bench["suite"]), "--db", str(bench["db"]), "--collection", "figs",
            "--json", "--methods", ",".join(METHODS), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["evaluated"] == bench["n"]
    again = json.loads((out / "report.json").read_text())
    assert _without_latency(again) == _without_latency(first.data)


def test_resume_runs_only_the_rest(first, bench):
    out = bench["root"] / "run3"
    out.mkdir()
    lines = (bench["root"] / "run1" / "results.jsonl").read_text().splitlines(keepends=True)
    done = 4
    torn = lines[done + 1][: len(lines[done + 1]) // 2]  # killed while writing query 5
    (out / "results.jsonl").write_text("".join(lines[: done + 1]) + torn)
    report = _run(bench, out)
    assert report.evaluated == bench["n"] - done
    assert _without_latency(report.data) == _without_latency(first.data)
    assert len((out / "results.jsonl").read_text().splitlines()) == bench["n"] + 1
    assert _run(bench, out).evaluated == 0  # complete: nothing left to do


def test_other_settings_are_refused(first, bench):
    with pytest.raises(InputError, match="other settings.*methods"):
        _run(bench, bench["root"] / "run1", methods=["legrad", "random"])


def test_bad_input_fails_before_any_work(bench, tmp_path):
    with pytest.raises(InputError, match="unknown heatmap method"):
        _run(bench, tmp_path, methods=["legrad", "gradcam-typo"])
    with pytest.raises(InputError, match="does not exist"):
        run_eval(tmp_path / "none.jsonl", db=bench["db"], collection="figs", out_dir=tmp_path)
    with pytest.raises(InputError, match="k must be at least 10"):
        _run(bench, tmp_path, k=5)
    assert not (tmp_path / "results.jsonl").exists()


class FakeAnswer:
    def __init__(self, data):
        self.data = data

    def to_dict(self):
        return self.data


class FakeAssistant:
    """Answers every question with the same two results and grounding figures."""

    def __init__(self, uris):
        self.uris = uris
        self.questions = []

    def ask(self, question, image=None, thread=None):
        self.questions.append(question)
        results = [{"rank": i + 1, "uri": u} for i, u in enumerate(self.uris)]
        return FakeAnswer({
            "answer": "#1 shows it [R1.1] [R9.9].",
            "results": results,
            "citations": [{"id": "R1.1", "rank": 1}],
            "grounding": {"sentences": 1, "cited": 2, "valid": 1, "supported": 1,
                          "removed": [{"sentence": "x", "why": "y"}]},
        })  # fmt: skip


def test_ask_mode_reads_the_grounding(bench, tmp_path):
    """Also indexes the split itself into a new collection (`--images`)."""
    folder = bench["root"] / "figs" / "images" / "test"
    fake = FakeAssistant([str(p.resolve()) for p in sorted(folder.glob("*.png"))[:2]])
    report = _run(
        bench, tmp_path, mode="ask", assistant=fake, methods=["random"],
        collection="figs-ask", encoder=TINY_VIT, images=folder,
    )  # fmt: skip
    assert len(fake.questions) == bench["n"]
    ask = report.data["ask"]
    assert ask["citation_validity"] == 0.5 and ask["citation_support"] == 0.5
    assert ask["citation_coverage"] == 1.0 and ask["removed_share"] == 0.5
    assert 0 <= ask["citation_relevance"] <= 1
    assert report.data["latency_ms"]["ask"]["p50"] > 0
    assert "Answers (ask mode)" in (tmp_path / "report.md").read_text()


def test_the_real_assistant_in_ask_mode(bench, tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    with Assistant(db=bench["db"], llm="none", collection="figs", history=":memory:",
                   out_dir=tmp_path / "overlays") as assistant:  # fmt: skip
        report = _run(bench, tmp_path, mode="ask", methods=["random"], limit=2,
                      assistant=assistant)  # fmt: skip
    assert set(report.data["ask"]) >= {"citation_validity", "citation_coverage"}


def test_files_are_where_the_report_says(first):
    assert [Path(f).name for f in first.files][:2] == ["report.json", "report.md"]
