"""The learned reranker: weights fitted by learning to rank, saved, loaded by name, and
used at search time on the same features; its file's error paths."""

import doctest
import json

import numpy as np
import pytest

import evident.tools.fusion
from evident.eval.ltr import CandidateList, fit_fusion
from evident.eval.scenes import COLOURS, SHAPES
from evident.tools.errors import InputError
from evident.tools.evidence.heatmaps import compute_heatmaps
from evident.tools.fusion import (
    FEATURES,
    Fusion,
    LearnedReranker,
    candidate_features,
    view_embeddings,
)
from evident.tools.pipeline import make_reranker
from evident.tools.records import Hit, Query
from tests.evidence_fixtures import corner_scene, shape_query, tiny, trained


def test_doctests():
    assert doctest.testmod(evident.tools.fusion).failed == 0


def corner_lists(enc, n_lists: int, seed: int):
    """Per list: one image with a small target in a corner among 11 without it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_lists):
        target = (list(COLOURS)[rng.integers(4)], SHAPES[rng.integers(4)])
        images = [corner_scene(rng, target)]
        images += [corner_scene(rng, target, present=False) for _ in range(11)]
        query = enc.encode_texts([shape_query(*target)])[0]
        cos = enc.encode_images(images) @ query
        order = np.argsort(-cos, kind="stable")
        hits = [
            Hit(r + 1, f"img{i}", f"/x/img{i}.png", float(cos[i]), scores={"image": float(cos[i])})
            for r, i in enumerate(order)
        ]
        out.append((query, hits, [images[i] for i in order]))
    return out


def test_fitted_weights_saved_and_loaded_by_name_lift_small_targets(tmp_path):
    enc = trained()
    lists = []
    for query, hits, images in corner_lists(enc, 16, seed=1):
        maps = compute_heatmaps(enc, images, query).maps
        x = candidate_features(query, hits, view_embeddings(enc, images, (0.5,)), maps)
        rel = np.array([h.id == "img0" for h in hits], dtype=float)
        lists.append(CandidateList("q", x, rel, 1))
    fitted = fit_fusion(lists)
    assert fitted.weights[FEATURES.index("best_crop")] > 0  # the crop carries the signal
    path = fitted.save(tmp_path / "fusion.json")
    reranker = make_reranker(f"learned:{path}", enc)
    assert isinstance(reranker, LearnedReranker) and reranker.name == "learned"
    assert np.allclose(reranker.fusion.weights, fitted.weights)
    first, final = [], []
    for query, hits, images in corner_lists(enc, 12, seed=7):  # held-out lists
        out = reranker.rerank(Query(text="t"), query, hits, images)
        assert [h.rank for h in out] == list(range(1, 13))
        mine = next(h for h in out if h.id == "img0")
        first.append(mine.first_stage["rank"])
        final.append(mine.rank)
    assert np.mean(final) < np.mean(first) - 1.0, (first, final)


def test_without_a_concentration_weight_no_heatmap_is_computed(monkeypatch):
    enc = tiny("evident-tiny-vit")
    fusion = Fusion(np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(4), np.ones(4))
    monkeypatch.setattr("evident.tools.evidence.heatmaps.compute_heatmaps", lambda *a, **k: 1 / 0)
    query, hits, images = corner_lists(enc, 1, seed=3)[0]
    out = LearnedReranker(enc, fusion).rerank(Query(text="t"), query, hits, images)
    # whole-image weight only: the first-stage order comes back
    assert [h.id for h in out] == [h.id for h in hits]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no fusion weights at"),
        ("{not json", "cannot read fusion weights"),
        ('{"format": "other"}', "holds no usable fusion weights: format is 'other'"),
        (
            {"weights": {"global": 1.0}, "mean": [0] * 4, "std": [1] * 4},
            "must name exactly global, best_crop, caption, concentration",
        ),
        (
            {"weights": dict.fromkeys(FEATURES, 1.0), "mean": [0] * 4, "std": [1, 1, 0, 1]},
            "positive",
        ),
        ({"weights": dict.fromkeys(FEATURES, 1.0), "mean": [0] * 3, "std": [1] * 4}, "usable"),
        ("[1, 2]", "holds no usable fusion weights"),
    ],
)
def test_bad_fusion_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "fusion.json"
    if isinstance(content, dict):
        content = json.dumps({"format": evident.tools.fusion.FORMAT} | content)
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        make_reranker(f"learned:{path}", tiny("evident-tiny-vit"))


def test_cli_search_with_a_missing_fusion_file_says_so_before_any_model_loads(tmp_path, capsys):
    from evident.agent.cli import main

    db = str(tmp_path / "db")
    with pytest.raises(SystemExit) as exited:
        main(["search", "a red circle", "--db", db, "--rerank", f"learned:{tmp_path}/no.json"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "no fusion weights file at" in err
    assert "Traceback" not in err and not (tmp_path / "db").exists()
