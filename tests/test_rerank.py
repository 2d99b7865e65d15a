"""Reranking: the multi-scale reranker finds small targets the whole-image cosine misses."""

import doctest
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import evident.tools.rerank
from evident.eval.scenes import COLOURS, SHAPES
from evident.tools.errors import InputError
from evident.tools.evidence.explain import explain_results
from evident.tools.pipeline import make_reranker, rerank
from evident.tools.records import Hit, Query
from evident.tools.rerank import MultiScaleReranker, rerank_by
from tests.evidence_fixtures import corner_scene, shape_query, tiny, trained


def test_doctests():
    assert doctest.testmod(evident.tools.rerank).failed == 0


def test_registry():
    enc = tiny("evident-tiny-vit")
    assert make_reranker("none", enc) is None and make_reranker(None, enc) is None
    assert isinstance(make_reranker("multiscale", enc), MultiScaleReranker)
    with pytest.raises(InputError, match="none, multiscale"):
        make_reranker("vlm-9000", enc)


def _first_stage(enc, query, images):
    cos = enc.encode_images(images) @ query
    order = np.argsort(-cos, kind="stable")
    hits = [
        Hit(r + 1, f"img{i}", f"/x/img{i}.png", float(cos[i]), scores={"image": float(cos[i])})
        for r, i in enumerate(order)
    ]
    return hits, [images[i] for i in order]


def test_multiscale_reranking_lifts_small_targets_in_corners():
    enc = trained()
    rng = np.random.default_rng(7)
    first, final = [], []
    for _ in range(12):
        target = (list(COLOURS)[rng.integers(4)], SHAPES[rng.integers(4)])
        images = [corner_scene(rng, target)]
        images += [corner_scene(rng, target, present=False) for _ in range(11)]
        query = enc.encode_texts([shape_query(*target)])[0]
        hits, ordered = _first_stage(enc, query, images)
        reranked = MultiScaleReranker(enc).rerank(Query(text="t"), query, hits, ordered)
        assert [h.rank for h in reranked] == list(range(1, 13))
        assert {h.id for h in reranked} == {h.id for h in hits}
        mine = next(h for h in reranked if h.id == "img0")
        assert mine.first_stage == {
            "rank": next(h.rank for h in hits if h.id == "img0"),
            "score": next(h.score for h in hits if h.id == "img0"),
        }
        first.append(mine.first_stage["rank"])
        final.append(mine.rank)
    assert np.mean(final) < np.mean(first) - 1.0, (first, final)
    assert np.mean(np.array(final) == 1) > np.mean(np.array(first) == 1)


def test_caption_similarity_is_fused():
    enc = tiny("evident-tiny-vit")
    image = Image.new("RGB", (64, 64), "white")
    query = enc.encode_texts(["a red circle"])[0]
    hits = [
        Hit(1, "a", "a", 0.5, scores={"image": 0.5, "caption": -1.0}),
        Hit(2, "b", "b", 0.4, scores={"image": 0.5, "caption": 1.0}),
    ]
    out = MultiScaleReranker(enc).rerank(Query(text="a red circle"), query, hits, [image] * 2)
    assert [h.id for h in out] == ["b", "a"]
    assert out[0].score - out[1].score == pytest.approx(0.25 * 2, abs=1e-5)
    assert out[1].first_stage == {"rank": 1, "score": 0.5}


class ReverseReranker:
    """What a VLM reranker looks like to the engine: any object with `name` and `rerank`."""

    name = "reverse"

    def rerank(self, query, query_embedding, hits, images):
        return rerank_by(hits, [float(h.rank) for h in hits])


def test_any_reranker_plugs_into_the_pipeline_and_ids_follow_final_ranks(tmp_path):
    enc = tiny("evident-tiny-vit")
    images = [Image.new("RGB", (64, 64), c) for c in ("red", "blue", "green")]
    query = enc.encode_texts(["a red circle"])[0]
    hits, images = _first_stage(enc, query, images)
    paths = []
    for h, im in zip(hits, images, strict=True):
        paths.append(tmp_path / f"{h.id}.png")
        im.save(paths[-1])
    hits = [replace(h, uri=str(p)) for h, p in zip(hits, paths, strict=True)]
    moved = rerank(Query("a red circle"), query, hits, ReverseReranker())
    assert [h.id for h in moved] == [h.id for h in reversed(hits)]
    assert [h.first_stage["rank"] for h in moved] == [3, 2, 1]
    out = explain_results(enc, query, moved, [Image.open(h.uri) for h in moved], curve_steps=0)
    for hit, ev in zip(out.hits, out.evidence, strict=True):
        assert ev.hit_id == hit.id
        assert all(r.id.startswith(f"R{hit.rank}.") for r in ev.regions)
    assert replace(hits[0]).first_stage is None  # the input hits are untouched
