"""The grounding contract and the template writer, on hand-made evidence (no models)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from evident.graphs import policy
from evident.graphs.state import evidence_by_rank
from evident.graphs.verify import check, citations, grounding, remove_failing, split_sentences


def region(rid: str, supported: bool, drop: float = 0.05, rank_after: int = 2) -> dict:
    cf = {"score_after": 0.2, "score_drop": drop if supported else 0.0002, "rank_after": rank_after}
    return {"id": rid, "box": [1, 2, 30, 40], "peak": 1.0, "mass": 0.4,
            "counterfactual": cf | {"supported": supported}}  # fmt: skip


def evidence(rank: int, *supported: bool, score: float = 0.3) -> dict:
    return {
        "kind": "evidence", "rank": rank, "id": f"id{rank}", "uri": f"/x/{rank}.png",
        "score": score, "cosine": score, "method": "legrad",
        "regions": [region(f"R{rank}.{i}", s) for i, s in enumerate(supported, 1)],
        "query_terms": [{"term": "red", "contribution": 0.03}],
        "heatmap": {"method": "legrad", "png": None, "overlay": f"/o/{rank}.png"},
    }  # fmt: skip


EVIDENCE = {1: evidence(1, True, False), 2: evidence(2, False, False, score=0.28)}


def kinds(text: str) -> list[str]:
    return [p.kind for p in check(text, EVIDENCE).problems]


def test_a_grounded_answer_passes():
    text = (
        "#1 matches in the top left [R1.1]. #2 has no supported region, so I cite nothing. "
        "I searched five images."
    )
    assert check(text, EVIDENCE).ok


def test_a_citation_of_a_missing_id_is_caught():
    assert kinds("#1 shows a red circle [R1.1, R1.7].") == ["missing"]
    assert kinds("#1 is red [R9.1].") == ["missing", "uncited"]


def test_a_citation_of_an_unsupported_region_is_caught():
    assert kinds("#1 shows a red circle [R1.1][R1.2].") == ["unsupported"]
    assert kinds("The circle in [R2.1] decides it.") == ["unsupported"]


def test_a_discussed_result_needs_a_citation_or_an_honest_no():
    assert kinds("#1 is clearly a red circle.") == ["uncited"]
    assert kinds("#2 is a red circle.") == ["uncited"]  # no support, and it does not say so
    assert kinds("#2 was not explained.") == []
    assert kinds("#2 is red [R1.1].") == ["mismatch", "uncited"]
    assert kinds("#1 ranks above #2 [R1.1].") == ["uncited"]  # #2 needs its own word


def test_failing_sentences_are_removed_and_reported():
    result = check("#1 is a circle [R1.1]. #1 also has [R1.2]. Done.", EVIDENCE)
    text, removed = remove_failing(result)
    assert text == "#1 is a circle [R1.1]. Done."
    assert removed == [
        {"sentence": "#1 also has [R1.2].", "why": ["R1.2 failed its counterfactual check"]}
    ]
    g = grounding(text, EVIDENCE, removed)
    assert g == {"sentences": 2, "cited": 1, "valid": 1, "supported": 1, "removed": removed}
    assert citations(text, EVIDENCE)[0] | {"overlay": "x"} == {
        "id": "R1.1", "rank": 1, "box": [1, 2, 30, 40], "supported": True,
        "score_drop": 0.05, "rank_after": 2, "overlay": "x",
    }  # fmt: skip


def test_sentences_keep_decimals_whole():
    assert split_sentences("Score 0.31 [R1.1]. Next one.\nLast") == [
        "Score 0.31 [R1.1].", "Next one.", "Last",
    ]  # fmt: skip


def _conversation(*artifacts) -> list:
    msgs: list = [HumanMessage("q")]
    for n, art in enumerate(artifacts):
        if art["kind"] == "evidence":  # what explain_results returns for one rank
            art = {"kind": "explanation", "ranks": [art["rank"]], "evidence": [art]}
        msgs.append(AIMessage("", tool_calls=[{"name": "t", "args": {}, "id": f"c{n}"}]))
        msgs.append(ToolMessage("x", tool_call_id=f"c{n}", artifact=art, name="t"))
    return msgs


SEARCH = {
    "kind": "search", "query": {"text": "red circle", "image": None}, "k": 4,
    "results": [{"rank": r, "id": f"id{r}", "uri": f"/x/{r}.png", "score": 0.3 - r / 100}
                for r in range(1, 5)],
}  # fmt: skip


@pytest.mark.parametrize(
    "artifacts",
    [
        (SEARCH, EVIDENCE[1], EVIDENCE[2]),
        (SEARCH, evidence(1, False), evidence(2, True, True), evidence(3, False)),
        (SEARCH,),
        ({"kind": "comparison", "a": EVIDENCE[1], "b": EVIDENCE[2], "margin": 0.02},),
        ({"kind": "comparison", "a": evidence(1, False), "b": evidence(2, False), "margin": 0.0},),
        (evidence(3, True, False),),
    ],
)
def test_the_template_writer_passes_its_own_verifier(artifacts):
    history = _conversation(SEARCH) if artifacts[0] is not SEARCH else []
    messages = history + _conversation(*artifacts)
    text = policy.write_answer(messages)
    assert check(text, evidence_by_rank(messages)).ok, text


def test_the_writer_says_what_it_could_not_cite():
    text = policy.write_answer(_conversation(SEARCH, EVIDENCE[1], EVIDENCE[2]))
    assert "[R1.1]" in text and "R1.2" not in text
    assert "#2 (score 0.280, legrad heatmap): no region passed" in text
    assert "Results #3 to #4 were ranked but not explained." in text


@pytest.mark.parametrize(
    ("question", "has_results", "kind", "ranks", "text"),
    [
        ("find the red circles and tell me why", False, "search", (), "the red circles"),
        ("why is #2 below #1?", True, "compare", (1, 2), ""),
        ("why is #2 below #1?", False, "search", (), "why is #2 below #1"),
        ("only the ones with a legend", True, "filter", (), "legend"),
        ("explain #3 with another method", True, "method", (3,), ""),
        ("show me images like #1", True, "similar", (1,), ""),
        ("why #4?", True, "why", (4,), ""),
    ],
)
def test_questions_become_intents(question, has_results, kind, ranks, text):
    intent = policy.parse_intent(question, has_results=has_results)
    assert (intent.kind, intent.ranks, intent.text) == (kind, ranks, text)


def test_another_method_is_another_method():
    intent = policy.parse_intent("explain #1 with another method", has_results=True)
    (call,) = policy.plan(intent, k=5, evidence={1: {"method": "hirescam"}})
    assert call["args"] == {"ranks": [1], "method": "gradcam"}
    intent = policy.parse_intent("explain #1 with layercam", has_results=True)
    assert policy.plan(intent, k=5, evidence={})[0]["args"]["method"] == "layercam"
