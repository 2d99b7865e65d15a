"""Counterfactual checks on a fake encoder whose evidence is known (the red top-left block)."""

import doctest

import numpy as np
import pytest
import torch
from open_clip.transformer import VisionTransformer

import evident.tools.evidence.counterfactuals
from evident.tools.errors import InputError
from evident.tools.evidence import tokens
from evident.tools.evidence.counterfactuals import removed, verify
from evident.tools.records import Region
from tests.evidence_fixtures import FakeEncoder, red_corner_image, tiny

QUERY = torch.tensor([[1.0, 0.0]])  # the fake's score grows with the top-left redness


def test_doctests():
    assert doctest.testmod(evident.tools.evidence.counterfactuals).failed == 0


def _setup(sizes=((32, 32), (48, 20))):
    enc = FakeEncoder()
    images = [red_corner_image(s) for s in sizes]
    pixels = enc.pixels(images)
    with torch.no_grad():
        scores = (enc.model.encode_image(pixels) * QUERY).sum(-1).numpy()
    return enc, images, pixels, scores


def _regions(rank, size):
    w, h = size
    evidence = Region(f"R{rank}.1", (0, 0, w // 2, h // 2), 1.0, 0.5)
    elsewhere = Region(f"R{rank}.2", (w // 2, h // 2, w, h), 0.6, 0.2)
    return (evidence, elsewhere)


@pytest.mark.parametrize("removal", ["mean", "blur"])
def test_the_evidence_beats_its_null_and_a_region_elsewhere_does_not(removal):
    enc, images, pixels, scores = _setup()
    regions = [_regions(i + 1, im.size) for i, im in enumerate(images)]
    checked, faith = verify(
        enc, pixels, QUERY, scores, regions, [im.size for im in images], removal=removal
    )
    for found in checked:
        evidence, elsewhere = found
        cf = evidence.counterfactual
        assert evidence.supported and cf.score_drop > 0.005
        assert len(cf.null_drops) == 8 and cf.score_drop > max(cf.null_drops)
        assert cf.threshold == pytest.approx(max(1e-3, float(np.quantile(cf.null_drops, 0.9))))
        assert cf.score_drop == cf.score_before - cf.score_after  # one scale, exactly
        assert cf.to_dict()["scale"] == "cosine" and len(cf.to_dict()["null"]["drops"]) == 8
        assert not elsewhere.supported
        assert elsewhere.counterfactual.score_drop == pytest.approx(0.0, abs=1e-6)
        assert cf.removal == removal
        assert evidence.id == found[0].id and evidence.box == found[0].box  # only cf added
    assert faith is None  # no maps, no curves


def test_the_null_is_seeded_by_the_region_not_the_batch():
    enc, images, pixels, scores = _setup()
    regions = [_regions(i + 1, im.size) for i, im in enumerate(images)]
    sizes = [im.size for im in images]
    both, _ = verify(enc, pixels, QUERY, scores, regions, sizes, removal="mean")
    again, _ = verify(enc, pixels, QUERY, scores, regions, sizes, removal="mean")
    assert both == again


def test_rank_after_reranks_within_the_returned_list():
    enc, images, pixels, scores = _setup()
    regions = [_regions(1, images[0].size), ()]
    ranking = [scores[0], scores[0] - 0.001]  # result 2 is just behind result 1
    checked, _ = verify(
        enc, pixels, QUERY, scores, regions, [im.size for im in images], ranking_scores=ranking
    )
    evidence, elsewhere = checked[0]
    assert evidence.counterfactual.rank_after == 2  # losing its evidence drops it below #2
    assert elsewhere.counterfactual.rank_after == 1
    assert checked[1] == ()


def test_curves_follow_the_heat():
    enc, images, pixels, scores = _setup(((32, 32),))
    good = np.zeros((1, 16, 16), np.float32)
    good[0, :8, :8] = 1.0  # heat on the evidence
    good[0, 8:, 8:] = 0.5
    bad = 1.0 - good
    regions = [_regions(1, images[0].size)]
    sizes = [images[0].size]
    _, (right,) = verify(enc, pixels, QUERY, scores, regions, sizes, maps=good, steps=4)
    _, (wrong,) = verify(enc, pixels, QUERY, scores, regions, sizes, maps=bad, steps=4)
    assert right.deletion_auc < wrong.deletion_auc
    assert right.insertion_auc > wrong.insertion_auc
    assert len(right.deletion) == len(right.insertion) == 5
    assert right.deletion[0] == pytest.approx(scores[0]) == right.insertion[-1]
    blank = right.deletion[-1]
    assert right.insertion[0] == blank


def test_all_masked_images_go_in_as_few_forwards_as_possible():
    enc, images, pixels, scores = _setup()
    regions = [_regions(i + 1, im.size) for i, im in enumerate(images)]
    maps = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    enc.model.calls = 0
    verify(enc, pixels, QUERY, scores, regions, [im.size for im in images], maps=maps, steps=3,
           removal="mean")  # fmt: skip
    variants = 4 * (1 + 8)  # 4 regions, each with its 8 null placements
    curves = 2 * (2 * 3 - 1)  # 5 curve images per result
    batches = [2, variants, curves]  # the unmasked scores, the variants, the curves
    assert enc.model.calls == sum(-(-n // enc.batch_size) for n in batches)


def test_removal_changes_only_the_box_and_unknown_removals_are_refused():
    enc = tiny("evident-tiny-vit")
    pixels = enc.pixels([red_corner_image((64, 64))])
    for removal in ("mean", "blur"):
        assert removed(pixels, removal).shape == pixels.shape
    with pytest.raises(InputError, match="tokens, mean, blur"):
        removed(pixels, "inpaint")


@pytest.mark.parametrize("pool", ["avg", "tok"])
@pytest.mark.parametrize("blocks", [1, 2])
def test_dropping_tokens_equals_running_the_tower_without_them(pool, blocks):
    """`tokens.finish` with tokens dropped (masked attention, only the used tokens carried
    through) gives what the tower computes on the kept tokens alone, for variants of
    several images at once; with nothing dropped, the tower's own forward."""
    torch.manual_seed(0)
    visual = VisionTransformer(
        image_size=32, patch_size=8, width=32, layers=3, heads=4, mlp_ratio=2.0, output_dim=16,
        pool_type=pool,
    ).eval()  # fmt: skip
    pixels = torch.randn(2, 3, 32, 32)
    start = len(visual.transformer.resblocks) - blocks
    rows = torch.tensor([0, 0, 0, 1, 1])
    keep = torch.rand(len(rows), 16) > 0.4
    keep[:, 0] = True
    with torch.inference_mode():
        hidden = tokens.prefix(visual, pixels, start)
        got, _ = tokens.finish(visual, hidden, start, keep, rows)
        for v, i in enumerate(rows.tolist()):
            x = hidden[i : i + 1, torch.cat([torch.ones(1, dtype=torch.bool), keep[v]])]
            for block in visual.transformer.resblocks[start:]:
                x = block(x)  # open_clip's own block, on the kept tokens only
            x = visual.ln_post(x)
            pooled = x[:, 1:].mean(1) if pool == "avg" else x[:, 0]
            want = torch.nn.functional.normalize(pooled @ visual.proj, dim=-1)
            torch.testing.assert_close(got[v : v + 1], want, atol=1e-5, rtol=1e-5)
        whole, _ = tokens.finish(visual, hidden, start)
        own = torch.nn.functional.normalize(visual(pixels), dim=-1)
        torch.testing.assert_close(whole, own, atol=1e-5, rtol=1e-5)
