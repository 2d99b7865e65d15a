import numpy as np
import pytest
from PIL import Image

from evident.tools import encoders
from evident.tools.encoders import load_encoder
from evident.tools.errors import ModelLoadError
from evident.tools.specs import Spec, parse_spec
from tests.conftest import TINY_RN, TINY_VIT


@pytest.mark.parametrize(
    ("spec", "kind", "arch"),
    [
        ("ViT-B-32:laion2b_s34b_b79k", "tag", "ViT-B-32"),
        ("ViT-B-32:/w/model.safetensors", "file", "ViT-B-32"),
        ("RN50:weights.pt", "file", "RN50"),
        ("random:ViT-B-32", "random", "ViT-B-32"),
        ("local-dir:/some/dir", "local-dir", None),
    ],
)
def test_parse_spec_forms(spec, kind, arch):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.arch) == (kind, arch)


def test_parse_spec_canonical_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(parse_spec("local-dir:model")) == f"local-dir:{tmp_path / 'model'}"
    assert parse_spec("random:ViT-B-32") == Spec("random", "ViT-B-32", None)


@pytest.mark.parametrize("bad", ["", "ViT-B-32", ":tag", "random:"])
def test_parse_spec_rejects_malformed(bad):
    with pytest.raises(ModelLoadError, match="not one of"):
        parse_spec(bad)


@pytest.mark.parametrize("spec", [TINY_VIT, TINY_RN])
def test_embeddings_are_batched_and_normalised(spec):
    enc = load_encoder(spec)
    images = [Image.new("RGB", (90 + 7 * i, 40 + 3 * i), (30 * i, 80, 200)) for i in range(5)]
    one_by_one = np.concatenate([enc.encode_images([im]) for im in images])
    batched = enc.encode_images(images)
    assert batched.shape == (5, enc.dim) == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
    texts = enc.encode_texts(["a red circle", "a blue square"])
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])
    assert all(not p.requires_grad for p in enc.model.parameters())
    assert not enc.model.training


def test_random_spec_is_the_same_model_in_every_load_and_warns(caplog):
    a = load_encoder(TINY_VIT).encode_texts(["x"])
    b = load_encoder(TINY_VIT).encode_texts(["x"])
    np.testing.assert_array_equal(a, b)
    assert "RANDOM WEIGHTS" in caplog.text


def test_local_dir_round_trip(tmp_path, tiny_encoder):
    from evident.eval.training.clip import save_model

    save_model(tiny_encoder.model, "evident-tiny-vit", tmp_path, tiny_encoder)
    loaded = load_encoder(f"local-dir:{tmp_path}")
    assert loaded.spec == f"local-dir:{tmp_path}"
    im = [Image.new("RGB", (64, 64), "red")]
    np.testing.assert_allclose(loaded.encode_images(im), tiny_encoder.encode_images(im), atol=1e-5)


def test_weights_file_form_loads_local_weights(tmp_path, tiny_encoder):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_encoder.model.state_dict().items()}, str(path))
    loaded = load_encoder(f"evident-tiny-vit:{path}")
    t = loaded.encode_texts(["a blue cross"])
    np.testing.assert_allclose(t, tiny_encoder.encode_texts(["a blue cross"]), atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-arch:foo", "Unknown open_clip architecture 'no-such-arch'"),
        ("ViT-B-32:no_such_tag", "has no pretrained tag 'no_such_tag'"),
        ("ViT-B-32:/nowhere/w.safetensors", "does not exist"),
        ("local-dir:/nowhere", "has no open_clip_config.json"),
    ],
)
def test_load_errors_are_clear(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        load_encoder(spec)


def test_offline_download_fails_fast_with_a_way_out(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(encoders, "_reachable", lambda host, port, timeout=3.0: False)
    with pytest.raises(ModelLoadError) as info:
        load_encoder("ViT-B-32:laion2b_s34b_b79k")
    msg = str(info.value)
    assert "not reachable" in msg and "local-dir:" in msg and "safetensors" in msg
    assert "\n" not in msg  # one paragraph


@pytest.mark.parametrize("spec", [TINY_VIT, TINY_RN])
def test_trimmed_text_encoding_equals_open_clips_full_context(spec):
    import torch

    from evident.tools.encoders import encode_text_trimmed

    enc = load_encoder(spec)
    texts = ["a red circle", "x", "a long caption " * 3, ""]
    tokens = enc.tokenizer(texts)
    with torch.inference_mode():
        full = enc.model.encode_text(tokens, normalize=True)
        trimmed = encode_text_trimmed(enc.model, tokens)
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=0)
