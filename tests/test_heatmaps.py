"""The heatmap engine: pytorch-grad-cam is the oracle; hooks, gradients and inputs stay clean."""

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from PIL import Image

from evident.eval.bench_evidence import library_cam
from evident.eval.scenes import make_scenes
from evident.tools.errors import InputError
from evident.tools.evidence.contribution import pools_by_mean
from evident.tools.evidence.heatmaps import (
    CAM_METHODS,
    activations_and_gradients,
    as_rgb,
    compute_heatmaps,
    default_method,
    query_rows,
    reshape_transform,
    top_channels,
)
from tests.evidence_fixtures import ARCHS, tiny

LIBRARY = {
    "gradcam": pgc.GradCAM,
    "gradcam++": pgc.GradCAMPlusPlus,
    "hirescam": pgc.HiResCAM,
    "layercam": pgc.LayerCAM,
    "eigencam": pgc.EigenCAM,
    "scorecam": pgc.ScoreCAM,
}
SCENES = make_scenes(3, seed=5)
IMAGES = [s.image for s in SCENES]


def _setup(arch):
    enc = tiny(arch)
    return enc, enc.encode_texts([s.caption for s in SCENES]), enc.pixels(IMAGES)


def _assert_clean(model):
    assert all(p.grad is None for p in model.parameters())
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", list(LIBRARY))
def test_engine_matches_library(arch, method):
    enc, queries, pixels = _setup(arch)
    options = {"top_n": 10**6} if method == "scorecam" else {}  # all channels, as the library
    ours = compute_heatmaps(enc, IMAGES, queries, method=method, **options).maps
    reference = library_cam(LIBRARY[method], enc, pixels, list(queries))
    assert ours.shape == reference.shape == (3, enc.image_size, enc.image_size)
    assert np.abs(ours - reference).max() <= 1e-4
    _assert_clean(enc.model)


@pytest.mark.parametrize("arch", ARCHS)
def test_scorecam_top_channels_match_library_on_those_channels(arch):
    enc, queries, pixels = _setup(arch)
    ours = compute_heatmaps(enc, IMAGES, queries, method="scorecam", top_n=4).maps
    act, grad, _, _ = activations_and_gradients(enc, pixels, query_rows(queries, 3, enc.device))
    idx = top_channels(act, grad, 4)
    base = reshape_transform(enc.model) or (lambda t: t)
    for i in range(3):
        pick = lambda t, i=i: base(t)[:, idx[i]]  # noqa: E731
        ref = library_cam(pgc.ScoreCAM, enc, pixels[i : i + 1], queries[i : i + 1], reshape=pick)
        assert np.abs(ours[i] - ref[0]).max() <= 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_every_method_runs_and_explains_the_retrieval_score(arch, method):
    enc, queries, pixels = _setup(arch)
    if method == "contribution" and not pools_by_mean(enc.model):
        with pytest.raises(InputError, match="pools by the mean of its patch tokens"):
            compute_heatmaps(enc, IMAGES, queries[0], method=method)
        return
    heat = compute_heatmaps(enc, IMAGES, queries[0], method=method, top_n=8)
    assert heat.method == method
    assert heat.maps.shape == (3, enc.image_size, enc.image_size)
    assert heat.maps.dtype == np.float32
    assert heat.maps.min() >= 0 and heat.maps.max() <= 1
    expected = enc.encode_images(IMAGES) @ queries[0]
    np.testing.assert_allclose(heat.scores, expected, atol=1e-5)  # hooks change nothing
    _assert_clean(enc.model)


def test_patch_contributions_add_up_to_the_cosine_exactly():
    """The map of a mean-pooling tower is a decomposition of the score, not an estimate."""
    enc, queries, pixels = _setup("evident-tiny-vit-avg")
    q = query_rows(queries, 3, enc.device)
    raw = CAM_METHODS["contribution"](enc, pixels, q)
    np.testing.assert_allclose(raw.maps.sum((1, 2)).numpy(), raw.scores.numpy(), atol=1e-5)
    expected = (enc.encode_images(IMAGES) * queries).sum(-1)
    np.testing.assert_allclose(raw.scores.numpy(), expected, atol=1e-5)
    assert default_method(enc) == "contribution"
    assert default_method(tiny("evident-tiny-vit")) == "legrad"


def _hook_counts(model):
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + ("forward" in vars(m))  # legrad's fast path swaps attention forwards in and out
        for m in model.modules()
    )


@pytest.mark.parametrize("spec", ["random:evident-tiny-vit", "random:evident-fig-s"])
@pytest.mark.parametrize("layers", [1, 2, None])
def test_legrad_fast_path_gives_the_general_paths_maps(spec, layers):
    """The class-token chain rule by hand == autograd over the whole attention matrix (on
    class-token ViTs; the bundled tower pools by the mean and takes the general path)."""
    from evident.tools.encoders import load_encoder
    from evident.tools.evidence.relevance import legrad

    enc = load_encoder(spec)
    pixels = enc.pixels(IMAGES)
    query = torch.from_numpy(enc.encode_texts(["a red circle"])[0])
    fast = legrad(enc, pixels, query, layers=layers, cls_path=True)
    general = legrad(enc, pixels, query, layers=layers, cls_path=False)
    scale = general.maps.abs().max()
    assert scale > 0
    assert (fast.maps - general.maps).abs().max() <= 1e-5 * scale
    torch.testing.assert_close(fast.scores, general.scores)
    _assert_clean(enc.model)


def test_legrad_takes_the_general_path_for_mean_pooled_towers(monkeypatch):
    from evident.tools.encoders import load_encoder
    from evident.tools.evidence import relevance

    enc = load_encoder("random:evident-tiny-vit")
    enc.model.visual.pool_type = "avg"  # a private copy: not the shared `tiny` encoder
    monkeypatch.setattr(relevance, "_legrad_class_token", lambda *a: 1 / 0)
    heat = compute_heatmaps(enc, IMAGES, enc.encode_texts(["a red circle"])[0], method="legrad")
    assert heat.maps.max() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_hooks_are_released_over_100_calls(arch):
    enc, queries, _ = _setup(arch)
    before = _hook_counts(enc.model)
    methods = [m for m in CAM_METHODS if m != "scorecam"] + ["scorecam"]
    if not pools_by_mean(enc.model):
        methods.remove("contribution")
    for i in range(100):
        compute_heatmaps(enc, IMAGES[:1], queries[0], method=methods[i % len(methods)], top_n=2)
    assert _hook_counts(enc.model) == before
    _assert_clean(enc.model)


@pytest.mark.parametrize("method", ["legrad", "gradcam"])
def test_hooks_are_released_when_the_forward_fails(method):
    enc, queries, _ = _setup("evident-tiny-vit")
    before = _hook_counts(enc.model)
    wrong_size = torch.zeros(1, 3, 32, 32)  # the positional embedding wants 64 px
    with pytest.raises(RuntimeError):
        compute_heatmaps(enc, IMAGES[:1], queries[0], method=method, pixels=wrong_size)
    assert _hook_counts(enc.model) == before


def test_works_inside_a_callers_no_grad_and_inference_mode():
    enc, queries, _ = _setup("evident-tiny-vit")
    plain = compute_heatmaps(enc, IMAGES, queries[0]).maps
    with torch.no_grad():
        np.testing.assert_allclose(compute_heatmaps(enc, IMAGES, queries[0]).maps, plain, atol=1e-6)
    with torch.inference_mode():
        pixels = enc.pixels(IMAGES)
        heat = compute_heatmaps(enc, IMAGES, queries[0], pixels=pixels)
    np.testing.assert_allclose(heat.maps, plain, atol=1e-6)


def test_unknown_method_names_the_known_ones():
    enc, queries, _ = _setup("evident-tiny-vit")
    with pytest.raises(InputError, match="legrad.*gradcam"):
        compute_heatmaps(enc, IMAGES, queries[0], method="gradcam-ultra")


def test_defaults_per_tower():
    assert default_method(tiny("evident-tiny-vit")) == "legrad"
    assert default_method(tiny("evident-tiny-rn")) == "hirescam"


def test_image_query_explains_image_to_image_similarity():
    enc = tiny("evident-tiny-vit")
    query = enc.encode_images(IMAGES[:1])[0]
    heat = compute_heatmaps(enc, IMAGES, query)
    np.testing.assert_allclose(heat.scores, enc.encode_images(IMAGES) @ query, atol=1e-5)
    assert heat.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert heat.maps[0].max() == 0  # the query image itself: no gradient, so no map
    assert heat.maps[1].max() == pytest.approx(1.0, abs=1e-5)


def test_any_pil_mode_and_size_and_maps_back_to_the_original():
    enc = tiny("evident-tiny-vit")
    rgba = Image.new("RGBA", (41, 97), (255, 0, 0, 0))
    images = [IMAGES[0].convert("L"), rgba, IMAGES[1].convert("P"), IMAGES[2].convert("CMYK")]
    heat = compute_heatmaps(enc, images, enc.encode_texts(["a red circle"])[0])
    assert heat.image_sizes[1] == (41, 97)
    assert heat.at_image_size(1).shape == (97, 41)
    assert as_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent means white


def test_no_images_no_maps():
    enc = tiny("evident-tiny-vit")
    heat = compute_heatmaps(enc, [], np.ones(enc.dim, np.float32))
    assert heat.maps.shape == (0, 64, 64) and heat.to_dict()["scores"] == []
