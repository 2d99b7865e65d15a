"""Regions from heatmaps, and the overlay PNGs that show them."""

import doctest

import numpy as np
import pytest
from PIL import Image

import evident.tools.evidence.regions
from evident.tools.evidence.overlays import render_overlay, write_pngs
from evident.tools.evidence.regions import box_on_map, find_regions, map_box
from evident.tools.records import Counterfactual, Region


def test_doctests():
    assert doctest.testmod(evident.tools.evidence.regions).failed == 0


def _blobs(shape=(64, 64)):
    heat = np.zeros(shape, np.float32)
    heat[5:15, 40:60] = 0.7
    heat[30:50, 10:20] = 1.0
    heat[60:62, 0:2] = 0.55  # a speck: under 1% of the heat
    return heat


def test_regions_are_ranked_with_stable_ids_and_shares_of_heat():
    regions = find_regions(_blobs(), (64, 64), rank=3)
    assert [r.id for r in regions] == ["R3.1", "R3.2"]
    assert regions[0].box == (10, 30, 20, 50) and regions[0].peak == 1.0
    assert regions[1].box == (40, 5, 60, 15) and regions[1].peak == pytest.approx(0.7)
    assert regions[0].mass == pytest.approx(200 / (200 + 140 + 4 * 0.55), abs=1e-6)
    assert find_regions(_blobs(), (64, 64), rank=3, max_regions=1) == regions[:1]
    assert find_regions(_blobs(), (64, 64), rank=1) == find_regions(_blobs(), (64, 64), rank=1)


def test_a_flat_map_has_no_regions():
    assert find_regions(np.zeros((8, 8)), (10, 10), rank=1) == ()


@pytest.mark.parametrize(
    "size", [(1, 1), (3, 7), (7, 3), (641, 17), (17, 641), (1000, 3), (333, 333), (4001, 2999)]
)
def test_regions_stay_inside_any_image(size):
    rng = np.random.default_rng(sum(size))
    for _ in range(5):
        heat = rng.random((64, 64)).astype(np.float32)
        heat[rng.integers(64), :] = 1.0  # a blob touching both sides
        for r in find_regions(heat, size, rank=1, max_regions=5):
            x0, y0, x1, y1 = r.box
            assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
            assert all(isinstance(v, int) for v in r.box)
            assert 0 < r.mass <= 1 and 0 < r.peak <= 1


def test_boxes_cover_their_pixels_both_ways():
    for size in [(10, 6), (97, 41), (64, 64), (5, 300)]:
        for box in [(0, 0, 1, 1), (3, 7, 20, 9), (63, 63, 64, 64), (0, 0, 64, 64)]:
            on_image = map_box(box, (64, 64), size)
            back = box_on_map(on_image, size, (64, 64))
            assert back[0] <= box[0] and back[1] <= box[1]
            assert back[2] >= box[2] and back[3] >= box[3]


def _region(rid, box, supported):
    cf = Counterfactual("mean", 0.5, 0.4, 0.1 if supported else -0.01, 1, supported, 0.001)
    return Region(rid, box, 0.9, 0.4, cf)


@pytest.mark.parametrize("background", [(250, 250, 250), (5, 5, 5)])
def test_overlay_draws_readable_boxes_on_light_and_dark_images(tmp_path, background):
    image = Image.new("RGB", (120, 80), background)
    heat = np.zeros((80, 120), np.float32)
    heat[20:60, 30:90] = 1.0
    regions = [_region("R1.1", (30, 20, 90, 60), True), _region("R1.2", (0, 0, 20, 20), False)]
    png, overlay = write_pngs(tmp_path, "r01-x", image, heat, regions)
    assert Image.open(png).size == Image.open(overlay).size == (120, 80)
    out = np.asarray(Image.open(overlay).convert("L"))
    ring = out[17:24, 80]  # across the top edge, clear of the label: dark and light strokes
    assert ring.min() <= 40 and ring.max() >= 240
    plain = np.asarray(render_overlay(image, heat).convert("L"))
    assert (out != plain).sum() > 100  # boxes and labels are drawn


def test_large_images_render_scaled_down():
    image = Image.new("RGB", (3000, 1500), "white")
    out = render_overlay(image, np.zeros((1500, 3000)), [_region("R1.1", (0, 0, 1500, 750), True)])
    assert out.size == (1024, 512)
