"""The bundled figure model's recipe end to end at toy size: render, phrases, train,
export, check; a second run resumes from what is there and trains nothing again."""

from __future__ import annotations

import json

import pytest

from evident.eval.training.figure_model import build_model
from evident.tools.encoders import load_encoder

TOY = {"n": 8, "val": 4, "steps": 2, "batch": 4, "checkpoint_every": 1, "size": 64,
       "width": 64, "layers": 1, "stem": [8, 16, 32, 64]}  # fmt: skip


@pytest.mark.slow  # about 20 s: `make test-slow`
def test_the_recipe_builds_a_loadable_model_and_resumes(tmp_path):
    out = tmp_path / "fig-model"
    recipe = build_model(out, TOY)
    assert recipe["complete"] and recipe["steps_done"] == 2
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
    assert again["steps_done"] == 2
    assert [p.stat().st_mtime_ns for p in shards] == stamps
    assert json.loads((out / "recipe.json").read_text())["settings"]["steps"] == 2
