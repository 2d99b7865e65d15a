"""`evident bench` end to end at toy sizes: every named figure and target comes out of one
run, finite and positive. (The figures themselves are measured by `evident bench` on an
idle machine, never asserted here: a loaded CI machine would make them lie.)"""

import json
import math

import pytest

from evident.agent.cli import main

pytestmark = pytest.mark.slow


def test_bench_reports_every_figure_and_target(capsys):
    rc = main(["bench", "--images", "8", "--vectors", "2000", "--figures", "30", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    figures = result["figures"]
    for name, target in result["targets"].items():
        assert name in figures, name
        assert target["met"] in (True, False)
    for name in ("ocr_images_per_s", "ask_s", "ask_floor_s", "cli_cold_search_s",
                 "bundled_index_images_per_s", "bundled_counterfactual_5x3_s"):  # fmt: skip
        assert math.isfinite(figures[name]["value"]) and figures[name]["value"] > 0
