"""The bundled figure model's recipe end to end at toy size: render, phrases, train,
export, check; a second run resumes from what is there and trains nothing again."""

from __future__ import annotations

import doctest
import json

import pytest
import torch

import evident.eval.training.figure_data
import evident.eval.training.trainer
from evident.eval.training.figure_data import siblings
from evident.eval.training.figure_model import DEFAULTS, build_model
from evident.eval.training.trainer import Phase, phases
from evident.tools.encoders import load_encoder

TOY = {"n": 8, "val": 4, "steps": 2, "refine_steps": 2, "batch": 4, "checkpoint_every": 1,
       "size": 64, "width": 64, "layers": 1, "stem": [8, 16, 32, 64]}  # fmt: skip


def test_doctests():
    assert doctest.testmod(evident.eval.training.figure_data).failed == 0
    assert doctest.testmod(evident.eval.training.trainer).failed == 0


def test_siblings_are_the_phrases_one_word_away():
    near = siblings(
        [
            "a line chart with grey circle markers",
            "a line chart with grey square markers",
            "a line chart with pink circle markers",
            "a line chart with pink square markers",  # two words away
            "a scatter plot with grey circle markers",  # two words away ("line chart")
        ]
    )
    assert near["a line chart with grey circle markers"] == [
        "a line chart with grey square markers",
        "a line chart with pink circle markers",
    ]
    assert near["a scatter plot with grey circle markers"] == []


def test_the_refinement_follows_the_recipe_at_a_lower_rate_with_siblings():
    first, refine = phases(DEFAULTS)
    assert first == Phase(0, DEFAULTS["steps"], DEFAULTS["lr"], 0)
    assert refine.first == first.steps and refine.lr < first.lr and refine.siblings > 0


@pytest.mark.slow  # about 20 s: `make test-slow`
def test_the_recipe_builds_a_loadable_model_and_resumes(tmp_path):
    out = tmp_path / "fig-model"
    recipe = build_model(out, TOY)
    assert recipe["complete"] and recipe["steps_done"] == 4  # 2 of the recipe, 2 refining
    state = torch.load(out / "train_state.pt", map_location="cpu", weights_only=False)
    assert state["phase"] == 2 and state["step"] == 4
    assert set(recipe["check"]) == {"type_p@5", "attribute_p@5", "pointing"}
    assert {"render", "phrases", "train"} <= set(recipe["seconds"])
    enc = load_encoder(f"local-dir:{out}")
    assert enc.dim == 384 and enc.image_size == 64
    assert enc.encode_texts(["a pie chart"]).shape == (1, 384)
    band = recipe["query_band"]  # the best cosines of its validation queries, to the config
    assert band["low"] <= band["high"] <= band["median"] and band["queries"] > 10
    assert enc.text_band == (band["low"], band["high"])
    shards = sorted((out / "data" / "train").glob("shard_*.npz"))
    stamps = [p.stat().st_mtime_ns for p in shards]
    again = build_model(out, TOY)  # everything is there: nothing is rendered or trained
    assert again["steps_done"] == 4
    assert [p.stat().st_mtime_ns for p in shards] == stamps
    assert json.loads((out / "recipe.json").read_text())["settings"]["steps"] == 2
