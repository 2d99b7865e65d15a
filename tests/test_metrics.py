"""Evaluation metrics against hand-computed cases, baselines, and suite validation."""

import doctest
import json
import math

import numpy as np
import pytest

import evident.eval.baselines
import evident.eval.metrics
import evident.eval.results_log
import evident.eval.suite
from evident.eval.baselines import baseline_heatmap, centre_map, random_maps
from evident.eval.metrics import (
    best_iou,
    bootstrap_ci,
    bootstrap_indices,
    difference_ci,
    energy_pointing_game,
    iou,
    ndcg_at_k,
    percentiles,
    pointing_game,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    retrieval_scores,
)
from evident.eval.run_eval import check_methods
from evident.eval.suite import load_suite, select
from evident.tools.errors import InputError


@pytest.mark.parametrize(
    "module",
    [evident.eval.metrics, evident.eval.baselines, evident.eval.results_log, evident.eval.suite],
)
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0


# --- retrieval ----------------------------------------------------------------------


def test_retrieval_by_hand():
    ranked = ["x", "a", "y", "b", "z", "c"]
    relevant = {"a", "b", "c", "d"}
    assert recall_at_k(ranked, relevant, 1) == 0.0
    assert recall_at_k(ranked, relevant, 5) == 2 / 4
    assert recall_at_k(ranked, relevant, 10) == 3 / 4
    assert precision_at_k(ranked, relevant, 5) == 2 / 5
    assert reciprocal_rank(ranked, relevant) == 1 / 2
    dcg = 1 / math.log2(3) + 1 / math.log2(5) + 1 / math.log2(7)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, 5))
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(dcg / ideal)


def test_no_relevant_retrieved_scores_zero():
    s = retrieval_scores(["x", "y", "z"], {"a"})
    assert all(v == 0.0 for v in s.values())


def test_perfect_single_relevant():
    s = retrieval_scores(["a", "x"], {"a"})
    assert s["recall@1"] == s["mrr"] == s["ndcg@10"] == s["success@1"] == 1.0
    assert s["precision@5"] == 1 / 5  # a short list still divides by k


def test_ndcg_caps_the_ideal_at_k():
    relevant = {f"r{i}" for i in range(20)}
    assert ndcg_at_k(sorted(relevant)[:10], relevant, 10) == pytest.approx(1.0)
    assert recall_at_k(sorted(relevant)[:10], relevant, 10) == 0.5


def test_empty_relevant_set_is_an_error():
    with pytest.raises(ValueError):
        recall_at_k(["a"], set(), 1)


# --- localization --------------------------------------------------------------------


def test_pointing_game_peak_inside_and_outside():
    heat = np.zeros((10, 20))
    heat[2, 15] = 1.0
    assert pointing_game(heat, [(14, 1, 16, 3)]) == 1.0
    assert pointing_game(heat, [(0, 0, 15, 10)]) == 0.0  # x1 is exclusive
    assert pointing_game(heat, [(0, 0, 5, 5), (15, 2, 16, 3)]) == 1.0  # any box


def test_pointing_game_ties_share_the_vote():
    heat = np.zeros((4, 4))
    heat[0, 0] = heat[0, 3] = heat[3, 0] = heat[3, 3] = 0.7
    assert pointing_game(heat, [(0, 0, 1, 1)]) == 0.25
    assert pointing_game(heat, [(0, 0, 4, 1)]) == 0.5


def test_pointing_game_tolerance_is_the_distance_to_the_nearest_target_pixel():
    heat = np.zeros((60, 60))
    heat[40, 40] = 1.0  # 11 columns and 11 rows past the box's last pixel (29, 29): 15.6 away
    box = [(10, 10, 30, 30)]
    assert [pointing_game(heat, box, t) for t in (0, 15, 16)] == [0.0, 0.0, 1.0]
    heat[40, 40], heat[20, 44] = 0.0, 1.0  # beside the box, 15 columns out
    assert [pointing_game(heat, box, t) for t in (0, 14, 15)] == [0.0, 0.0, 1.0]
    assert pointing_game(heat, [(100, 100, 120, 120)], 15) == 0.0  # far off the image
    ties = np.zeros((4, 4))
    ties[0, 0] = ties[0, 3] = 1.0  # two peaks, one within 2 px of the box, one 3 px away
    assert pointing_game(ties, [(0, 2, 1, 3)], 2) == 0.5


def test_empty_heatmap_scores_chance():
    empty = np.zeros((10, 10))
    assert pointing_game(empty, [(0, 0, 5, 4)]) == pytest.approx(0.2)
    assert energy_pointing_game(empty, [(0, 0, 5, 4)]) == pytest.approx(0.2)


def test_energy_pointing_game_by_hand():
    heat = np.array([[1.0, 1.0, 0.0], [2.0, 0.0, -5.0]])  # negative heat is clipped
    assert energy_pointing_game(heat, [(0, 1, 1, 2)]) == pytest.approx(0.5)
    assert energy_pointing_game(heat, [(0, 0, 3, 2)]) == pytest.approx(1.0)
    # overlapping boxes count their pixels once
    assert energy_pointing_game(heat, [(0, 0, 2, 1), (1, 0, 2, 2)]) == pytest.approx(0.5)


def test_boxes_outside_the_image_are_clipped():
    heat = np.ones((4, 4))
    assert energy_pointing_game(heat, [(-10, -10, 2, 2)]) == pytest.approx(0.25)
    assert energy_pointing_game(heat, [(10, 10, 20, 20)]) == 0.0


def test_non_finite_heat_is_an_error():
    heat = np.zeros((2, 2))
    heat[0, 0] = np.nan
    with pytest.raises(ValueError):
        pointing_game(heat, [(0, 0, 1, 1)])


def test_iou_by_hand():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching, exclusive edges
    assert iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert best_iou((0, 0, 10, 10), [(50, 50, 60, 60), (0, 0, 10, 5)]) == 0.5
    assert best_iou(None, [(0, 0, 1, 1)]) == 0.0


# --- statistics ----------------------------------------------------------------------


def _reference_ci(values, indices):
    """The plain loop the vectorised bootstrap must agree with."""
    stats = [np.mean([values[i] for i in row]) for row in indices]
    return tuple(np.percentile(stats, [2.5, 97.5]))


def test_bootstrap_matches_reference_and_is_seeded():
    rng = np.random.default_rng(3)
    values = rng.random(40)
    idx = bootstrap_indices(40, 500, seed=7)
    assert np.array_equal(idx, bootstrap_indices(40, 500, seed=7))
    assert not np.array_equal(idx, bootstrap_indices(40, 500, seed=8))
    lo, hi = bootstrap_ci(values, indices=idx)
    assert (lo, hi) == pytest.approx(_reference_ci(values, idx))
    assert lo < values.mean() < hi


def test_bootstrap_ratio_of_sums():
    idx = bootstrap_indices(3, 300, seed=0)
    # three queries with 1, 2 and 1 images: per-image hits 1 | 1, 0 | 0
    lo, hi = bootstrap_ci([1, 1, 0], [1, 2, 1], indices=idx)
    assert 0 <= lo <= 0.5 <= hi <= 1
    assert bootstrap_ci([], indices=bootstrap_indices(0, 10)) is None


def test_paired_difference():
    a = np.array([0.9, 0.8, 0.1, 0.5])
    idx = bootstrap_indices(4, 200, seed=0)
    assert difference_ci((a, None), (a, None), indices=idx) == (0.0, 0.0)
    assert difference_ci((a + 0.25, None), (a, None), indices=idx) == pytest.approx((0.25, 0.25))
    # unpaired noise would widen this interval; paired resampling keeps it exact


def test_percentiles():
    assert percentiles([5.0]) == [5.0, 5.0]
    assert percentiles([1.0, 2.0, 3.0, 4.0], (50,)) == [2.5]
    assert percentiles([]) == [None, None]


# --- baselines -----------------------------------------------------------------------


def test_random_maps_depend_on_key_not_order():
    a = random_maps(["q1:x", "q2:y"], (7, 7), seed=0)
    b = random_maps(["q2:y", "q1:x"], (7, 7), seed=0)
    assert np.array_equal(a[0], b[1]) and not np.array_equal(a[0], a[1])
    assert a.min() >= 0 and a.max() < 1


def test_centre_map_peaks_in_the_middle():
    m = centre_map((64, 64))
    assert np.unravel_index(m.argmax(), m.shape) in {(31, 31), (31, 32), (32, 31), (32, 32)}


def test_baselines_are_shaped_like_real_heatmaps(tiny_encoder):
    from PIL import Image

    from evident.tools.evidence.heatmaps import compute_heatmaps

    images = [Image.new("RGB", (80, 40), c) for c in ("red", "blue")]
    q = tiny_encoder.encode_texts(["a red square"])[0]
    real = compute_heatmaps(tiny_encoder, images, q, method="gradcam")
    for name in ("random", "centre"):
        heat = baseline_heatmap(name, tiny_encoder, images, q, keys=["a", "b"])
        assert heat.maps.shape == real.maps.shape and heat.maps.dtype == real.maps.dtype
        assert heat.maps.max() == pytest.approx(1.0) and heat.maps.min() >= 0
        np.testing.assert_allclose(heat.scores, real.scores, atol=1e-5)
        assert heat.at_image_size(0).shape == (40, 80)
    centre = baseline_heatmap("centre", tiny_encoder, images, q, keys=["a", "b"])
    assert pointing_game(centre.at_image_size(0), [(30, 10, 50, 30)]) == 1.0


# --- suites and settings -------------------------------------------------------------


def _suite(tmp_path, rows):
    (tmp_path / "img.png").write_bytes(b"")  # existence is what the loader checks
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {"id": "q1", "level": "component", "query": "a legend", "relevant": ["img.png"]}


def test_suite_loads_and_resolves(tmp_path):
    path = _suite(tmp_path, [GOOD | {"targets": {"img.png": [[0, 0, 5, 5]]}}, "", GOOD | {"id": 2}])
    q1, q2 = load_suite(path)
    assert q1.paths["img.png"] == str((tmp_path / "img.png").resolve())
    assert q1.targets == {"img.png": ((0, 0, 5, 5),)} and q2.id == "2"


def test_missing_suite_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_suite(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (GOOD | {"relevant": []}, "non-empty list"),
        (GOOD | {"relevant": ["gone.png"]}, "'gone.png' does not exist"),
        (GOOD | {"query": "", "id": "q3"}, "needs 'query'"),
        (GOOD | {"targets": {"other.png": [[0, 0, 1, 1]]}}, "not in 'relevant'"),
        (GOOD | {"targets": {"img.png": [[5, 0, 1, 1]]}}, "must be boxes"),
        (GOOD, "used twice"),
    ],
)
def test_malformed_line_names_its_line(tmp_path, bad, message):
    path = _suite(tmp_path, [GOOD, bad])
    with pytest.raises(InputError, match=message) as err:
        load_suite(path)
    assert f"{path}:2:" in str(err.value)


def test_unknown_method():
    with pytest.raises(InputError, match="'nocam'.*known: contribution, legrad"):
        check_methods(["legrad", "nocam"])
    assert check_methods(None)[-2:] == ["random", "centre"]


def test_select_is_seeded_and_keeps_order(tmp_path):
    path = _suite(tmp_path, [GOOD | {"id": f"q{i}"} for i in range(20)])
    queries = load_suite(path)
    a, b = select(queries, 5, seed=0), select(queries, 5, seed=0)
    assert [q.id for q in a] == [q.id for q in b] and len(a) == 5
    assert [q.id for q in a] == [q.id for q in queries if q in a]
