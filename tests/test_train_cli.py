"""`evident train`: a few steps on generated figures, resuming, the recipe, and input errors."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evident.agent.cli import main
from evident.eval.training.pairs import read_pairs, train_from_pairs
from evident.tools.encoders import load_encoder
from evident.tools.errors import InputError

FAST = {"arch": "evident-tiny-vit", "batch_size": 8, "lr": 1e-3, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    from evident.eval.figures.generate import generate_figures

    out = tmp_path_factory.mktemp("figures")
    generate_figures(out, 30, seed=0, workers=1)
    return out / "pairs.jsonl"


class Interrupt(Exception):
    pass


def test_train_writes_a_loadable_model_and_its_recipe(pairs, tmp_path):
    seen = []
    report = train_from_pairs(
        pairs, tmp_path / "m", steps=4, on_step=lambda s, _: seen.append(s), **FAST
    )
    assert seen == [1, 2, 3, 4]
    recipe = json.loads((tmp_path / "m" / "recipe.json").read_text())
    assert recipe == report.recipe
    assert recipe["complete"] and recipe["steps_done"] == recipe["steps"] == 4
    assert recipe["n_pairs"] == 42 and recipe["n_images"] == 21  # two captions per figure
    assert recipe["arch"] == "evident-tiny-vit" and recipe["device"].startswith("cpu")
    assert recipe["parameters"] > 0 and recipe["image_size"] == 64 and recipe["embed_dim"] == 32
    assert recipe["wall_seconds"] > 0 and recipe["final_loss"] > 0
    encoder = load_encoder(report.spec, device="cpu")
    vec = encoder.encode_texts(["a pie chart"])
    assert vec.shape == (1, 32) and abs(float((vec**2).sum()) - 1) < 1e-4


def test_rerun_after_an_interruption_continues_the_step_count(pairs, tmp_path):
    out = tmp_path / "m"

    def stop_at_5(step, loss):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_from_pairs(pairs, out, steps=6, checkpoint_every=2, on_step=stop_at_5, **FAST)
    assert (out / "train_state.pt").is_file()
    assert json.loads((out / "recipe.json").read_text())["steps_done"] == 4

    seen = []
    report = train_from_pairs(
        pairs, out, steps=6, checkpoint_every=2, on_step=lambda s, _: seen.append(s), **FAST
    )
    assert seen == [5, 6] and report.resumed_from == 4
    assert not (out / "train_state.pt").exists()

    again = train_from_pairs(
        pairs, out, steps=6, checkpoint_every=2, on_step=lambda s, _: seen.append(s), **FAST
    )
    assert again.already_done and seen == [5, 6]  # finished: nothing retrained

    with pytest.raises(InputError, match=r"other settings \(steps=6\)"):
        train_from_pairs(pairs, out, steps=8, checkpoint_every=2, **FAST)


def test_fp16_weights_and_fine_tuning_from_a_local_dir(pairs, tmp_path):
    first = train_from_pairs(pairs, tmp_path / "a", steps=2, fp16=True, **FAST)
    weights = load_file(tmp_path / "a" / "open_clip_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    load_encoder(first.spec, device="cpu")

    tuned = train_from_pairs(
        pairs, tmp_path / "b", init=first.spec, steps=2, **(FAST | {"arch": None})
    )
    assert tuned.recipe["init"] == first.spec and tuned.recipe["arch"] is None
    config = json.loads((tmp_path / "b" / "open_clip_config.json").read_text())
    assert config == json.loads((tmp_path / "a" / "open_clip_config.json").read_text())
    assert load_encoder(tuned.spec, device="cpu").dim == 32


def test_cmd_train_prints_one_line_and_json(pairs, tmp_path, capsys):
    argv = ["train", str(pairs), "--out", str(tmp_path / "m"), "--model", "evident-tiny-vit",
            "--steps", "2", "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert "trained 2 steps on 42 pairs" in capsys.readouterr().err
    assert main([*argv, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["already_done"] and shown["spec"] == f"local-dir:{tmp_path / 'm'}"


def test_bad_input_is_an_input_error_naming_the_problem(pairs, tmp_path):
    with pytest.raises(InputError, match="no such pairs file"):
        read_pairs(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    image = sorted((pairs.parent / "images" / "train").iterdir())[0]
    lines = [json.dumps({"image": str(image), "caption": "ok"}), "", "{not json"]
    bad.write_text("\n".join(lines))
    with pytest.raises(InputError, match=r"bad.jsonl:3: not valid JSON"):
        read_pairs(bad)
    bad.write_text(json.dumps({"image": "nope.png", "caption": "a chart"}))
    with pytest.raises(InputError, match=r"bad.jsonl:1: image 'nope.png' not found"):
        read_pairs(bad)
    bad.write_text(json.dumps({"image": str(image), "caption": " "}))
    with pytest.raises(InputError, match="'caption' must be a non-empty string"):
        read_pairs(bad)
    bad.write_text("\n\n")
    with pytest.raises(InputError, match="holds no image"):
        read_pairs(bad)
    with pytest.raises(InputError, match="unknown model architecture 'ViT-Nope'"):
        train_from_pairs(pairs, tmp_path / "m", **(FAST | {"arch": "ViT-Nope"}))
    with pytest.raises(InputError, match="--steps must be a positive integer"):
        train_from_pairs(pairs, tmp_path / "m", steps=0, **FAST)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        train_from_pairs(pairs, tmp_path / "full", steps=1, **FAST)
    broken = tmp_path / "broken.jsonl"
    (tmp_path / "x.png").write_bytes(b"not a png")
    broken.write_text(json.dumps({"image": "x.png", "caption": "a chart"}))
    with pytest.raises(InputError, match=r"cannot train on image .*x.png.*not an image"):
        train_from_pairs(broken, tmp_path / "n", steps=1, **FAST)
