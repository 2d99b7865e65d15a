"""Learning the fusion weights: synthetic lists where the right answer is known, and the
feature pipeline end to end on a tiny index."""

import json

import numpy as np
import pytest

from evident.eval.ltr import (
    FEATURES,
    CandidateList,
    compare_fusion,
    evaluate,
    fit_fusion,
    hand_set_scores,
)


def synthetic(n_lists: int, informative: int, *, seed: int, n: int = 20, noise: float = 0.3):
    """Lists whose relevance follows one feature (plus noise); the others are pure noise.

    Features are on the scale of cosines, and the relevant candidates are the top 3 of
    `x[:, informative] + noise`, so no other feature carries any signal.
    """
    rng = np.random.default_rng(seed)
    lists = []
    for i in range(n_lists):
        x = rng.normal(0.3, 0.1, size=(n, len(FEATURES)))
        signal = x[:, informative] + noise * 0.1 * rng.normal(size=n)
        rel = np.zeros(n)
        rel[np.argsort(-signal)[:3]] = 1
        lists.append(CandidateList(f"q{i}", x, rel, 3, level="even" if i % 2 else "odd"))
    return lists


@pytest.mark.parametrize("informative", range(len(FEATURES)))
def test_the_fit_recovers_the_informative_feature(informative):
    fusion = fit_fusion(synthetic(150, informative, seed=informative))
    w = np.abs(fusion.weights)
    assert w.argmax() == informative
    assert np.delete(w, informative).max() < 0.15 * w[informative]
    assert fusion.loss[-1] < fusion.loss[0]


def test_learned_fusion_beats_the_hand_set_one_when_the_signal_is_concentration():
    train = synthetic(150, 3, seed=1)
    test = synthetic(100, 3, seed=2)
    report = compare_fusion(train, test, n_boot=200)
    gain = report["learned_minus_hand_set"]["ndcg@10"]
    assert gain["mean"] > 0.3 and gain["ci95"][0] > 0
    assert report["learned"]["recall@5"]["mean"] > report["hand_set"]["recall@5"]["mean"]
    assert set(report["by_level"]) == {"even", "odd"}
    assert report["by_level"]["odd"]["queries"] == 50
    assert max(report["fusion"]["weights"], key=lambda k: abs(report["fusion"]["weights"][k])) == (
        "concentration"
    )
    json.dumps(report)  # plain values only


def test_l2_shrinks_the_weights_and_a_constant_feature_gets_none():
    lists = synthetic(60, 1, seed=3)
    lists = [
        CandidateList(c.query, np.c_[c.features[:, :2], np.full(20, np.nan), c.features[:, 3]],
                      c.relevant, c.n_relevant)
        for c in lists
    ]  # fmt: skip
    loose, tight = fit_fusion(lists, l2=1e-4), fit_fusion(lists, l2=1.0)
    assert np.linalg.norm(tight.weights) < 0.5 * np.linalg.norm(loose.weights)
    assert loose.weights[2] == 0.0  # missing captions (NaN -> 0) carry nothing to learn


def test_hand_set_scores_follow_the_multiscale_reranker():
    from evident.tools.rerank import MultiScaleReranker

    f = np.array([[0.2, 0.6, np.nan, 0.9], [0.2, 0.6, 0.4, 0.1]])
    cw, tw = MultiScaleReranker.crop_weight, MultiScaleReranker.caption_weight
    visual = (1 - cw) * 0.2 + cw * 0.6
    assert hand_set_scores(f) == pytest.approx([visual, (1 - tw) * visual + tw * 0.4])


def test_evaluate_counts_relevant_items_the_first_stage_missed():
    # candidates scored 3, 2, 1 with the second relevant; the collection holds 2 relevant
    lists = [CandidateList("q", np.array([[3.0], [2.0], [1.0]]), np.array([0, 1, 0]), 2)]
    got = evaluate(lists, lambda f: f[:, 0])
    assert got["recall@5"] == [0.5]
    assert got["precision@5"] == [pytest.approx(0.2)]
    ideal = 1 + 1 / np.log2(3)
    assert got["ndcg@10"] == [pytest.approx((1 / np.log2(3)) / ideal)]


def test_fit_needs_a_list_with_a_relevant_candidate():
    empty = CandidateList("q", np.zeros((3, 4)), np.zeros(3), 0)
    with pytest.raises(ValueError, match="no candidate list"):
        fit_fusion([empty])


def test_candidate_lists_from_a_tiny_index(tmp_path, tiny_encoder):
    from evident.eval.ltr_data import build_lists
    from evident.eval.scenes import make_scenes
    from evident.eval.suite import load_suite
    from evident.tools.ingest.index import index_paths
    from evident.tools.records import Query
    from evident.tools.retrieve import search_images
    from evident.tools.store import Store
    from tests.conftest import write_scenes

    paths = write_scenes(tmp_path / "imgs", make_scenes(12, seed=5))
    suite = tmp_path / "suite.jsonl"
    rows = [
        {"id": "a", "query": "a red circle", "relevant": [f"imgs/{paths[0].name}"]},
        {"id": "b", "query": "a blue square", "level": "type",
         "relevant": [f"imgs/{p.name}" for p in paths[1:3]]},
    ]  # fmt: skip
    suite.write_text("\n".join(json.dumps(r) for r in rows))
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="ltr")

        def search(query):
            return search_images(query, 6, store=store, collection="ltr", encoder=tiny_encoder)

        lists = build_lists(load_suite(suite), search, tiny_encoder)
        first = search(Query(text="a red circle")).hits
    assert lists[0].features[:, 0] == pytest.approx([h.scores["image"] for h in first], abs=1e-4)
    assert lists[0].relevant.tolist() == [h.uri == str(paths[0].resolve()) for h in first]
    assert [c.level for c in lists] == ["all", "type"]
    assert [c.n_relevant for c in lists] == [1, 2]
    for c in lists:
        assert c.features.shape == (6, len(FEATURES))
        assert np.isnan(c.features[:, 2]).all()  # no captions indexed
        assert np.isfinite(c.features[:, [0, 1, 3]]).all()
        assert ((c.features[:, 3] >= 0.1 - 1e-6) & (c.features[:, 3] <= 1 + 1e-6)).all()
