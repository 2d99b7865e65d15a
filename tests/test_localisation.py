"""Localisation is asserted: on a tiny CLIP trained for seconds, the default method's top
region holds the named shape and the counterfactual backs it; random heat does not."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evident.eval.scenes import make_scenes
from evident.tools.evidence.counterfactuals import verify
from evident.tools.evidence.explain import explain_results
from evident.tools.evidence.heatmaps import (
    compute_heatmaps,
    default_method,
    normalise_maps,
    query_rows,
)
from evident.tools.evidence.regions import find_regions
from evident.tools.records import Hit, Query
from tests.evidence_fixtures import held_out, shape_query, trained

HELD_OUT = held_out()


def _score(maps, enc, pixels, queries, scores):
    """Share of scenes whose top region holds the shape's centre; of those also supported;
    mean top-box area; mean deletion and insertion AUC."""
    regions = [
        find_regions(m, s.image.size, rank=1, max_regions=1)
        for m, s in zip(maps, HELD_OUT, strict=True)
    ]
    sizes = [s.image.size for s in HELD_OUT]
    checked, faith = verify(enc, pixels, queries, scores, regions, sizes, maps=maps, steps=5)
    hits, supported, passed, areas = [], [], [], []
    for scene, found in zip(HELD_OUT, checked, strict=True):
        x0, y0, x1, y1 = found[0].box if found else (0, 0, 0, 0)
        cx, cy = scene.centre
        hits.append(x0 <= cx < x1 and y0 <= cy < y1)
        passed.append(bool(found) and found[0].supported)
        supported.append(hits[-1] and passed[-1])
        areas.append((x1 - x0) * (y1 - y0) / (scene.image.width * scene.image.height))
    return {
        "hit": np.mean(hits),
        "supported": np.mean(supported),  # holds the shape and passed its check
        "passed": np.mean(passed),  # passed its check, wherever it is
        "area": np.mean(areas),
        "max_area": max(areas),
        "deletion": np.mean([f.deletion_auc for f in faith]),
        "insertion": np.mean([f.insertion_auc for f in faith]),
    }


@pytest.fixture(scope="module")
def results():
    enc = trained()
    images = [s.image for s in HELD_OUT]
    texts = [shape_query(s.colour, s.shape) for s in HELD_OUT]
    queries = enc.encode_texts(texts)
    pixels = enc.pixels(images)
    q = query_rows(queries, len(images), enc.device)
    heat = compute_heatmaps(enc, images, queries, pixels=pixels)
    noise = torch.rand(len(images), 8, 8, generator=torch.Generator().manual_seed(0))
    random_maps = normalise_maps(noise, (enc.image_size, enc.image_size)).numpy()
    return {
        "method": heat.method,
        "engine": _score(heat.maps, enc, pixels, q, heat.scores),
        "random": _score(random_maps, enc, pixels, q, heat.scores),
    }


def test_default_method_localises_the_named_shape(results):
    assert results["method"] == default_method(trained()) == "legrad"
    engine = results["engine"]
    assert engine["hit"] >= 0.8, results
    # the calibrated counterfactual backs the top region (it must beat 9 in 10 boxes of its
    # size elsewhere in the same image; chance is 0.1)
    assert engine["supported"] >= 0.6, results
    assert engine["area"] <= 0.35, results  # and the region is not the whole image


def test_random_heat_does_clearly_worse(results):
    engine, random = results["engine"], results["random"]
    assert random["hit"] <= engine["hit"] - 0.2, results
    assert random["supported"] <= engine["supported"] - 0.2, results
    # the calibrated check: a region cut from random heat beats its own null about as
    # often as chance (1 in 10); the real one nearly always
    assert random["passed"] <= 0.2 and engine["passed"] >= 0.6, results
    assert engine["max_area"] <= 0.5 and random["max_area"] <= 0.5, results
    assert engine["deletion"] < random["deletion"], results  # faithfulness agrees
    assert engine["insertion"] > random["insertion"], results


def test_explain_results_end_to_end(tmp_path):
    enc = trained()
    scenes = make_scenes(5, seed=321)
    text = shape_query(scenes[2].colour, scenes[2].shape)
    query = enc.encode_texts([text])[0]
    cos = enc.encode_images([s.image for s in scenes]) @ query
    order = np.argsort(-cos)
    hits = [Hit(r + 1, f"s{i}", f"/x/s{i}.png", float(cos[i])) for r, i in enumerate(order)]
    images = [scenes[i].image for i in order]
    out = explain_results(
        enc,
        query,
        hits,
        images,
        query=Query(text=text),
        out_dir=tmp_path,
        curve_steps=5,
    )
    data = json.loads(json.dumps(out.to_dict()))
    assert set(data["timings_ms"]) >= {"cam", "regions", "counterfactual"}
    for rank, result in enumerate(data["results"], start=1):
        assert result["rank"] == rank
        assert result["heatmap"]["method"] == "legrad"
        assert Path(result["heatmap"]["png"]).is_file()
        assert Path(result["heatmap"]["overlay"]).is_file()
        assert [t["term"] for t in result["query_terms"]] == text.split()
        assert set(result["faithfulness"]) >= {"deletion_auc", "insertion_auc"}
        for n, region in enumerate(result["regions"], start=1):
            assert region["id"] == f"R{rank}.{n}"
            cf = region["counterfactual"]
            assert set(cf) >= {"scale", "score_before", "score_after", "score_drop", "null"}
            assert cf["scale"] == "cosine" and len(cf["null"]["drops"]) == 8
            assert cf["score_drop"] == pytest.approx(
                cf["score_before"] - cf["score_after"], abs=2e-6
            )
    cited = [r.id for ev in out.evidence for r in ev.supported_regions]
    assert all(r.supported for ev in out.evidence for r in ev.regions if r.id in cited)


def test_explain_nothing():
    out = explain_results(trained(), np.ones(32, np.float32), [], [])
    assert out.to_dict()["results"] == []
