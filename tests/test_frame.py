"""Where a chart's plot lies across the image, read at indexing time: the x axis where a
chart has one (not a black slice's edge), the filled shapes of a pie otherwise; and what
that tells a legend beside the plot from one inside it, where the tick labels cannot."""

import doctest
import json

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import evident.tools.ingest.frame
from evident.tools.colours import SHARES_SIDE, name_grid
from evident.tools.ingest.frame import decode, plot_span
from evident.tools.ingest.index import index_paths
from evident.tools.ingest.layout import TextLine
from evident.tools.ingest.ocr import Reading
from evident.tools.places import elsewhere, named_place, words_scores
from evident.tools.store import Store


def test_doctests():
    assert doctest.testmod(evident.tools.ingest.frame).failed == 0


def _render(fig, path) -> tuple[float, float]:
    """Save `fig`; the x extent of its first axes as shares of the image's width."""
    canvas = FigureCanvasAgg(fig)
    canvas.print_png(str(path))
    x0, _, x1, _ = fig.axes[0].get_window_extent(canvas.get_renderer()).extents
    return x0 / fig.bbox.width, x1 / fig.bbox.width


def _span(path) -> dict:
    return plot_span(name_grid(Image.open(path), SHARES_SIDE))


@pytest.mark.parametrize("grid", [False, True])
def test_a_line_chart_spans_its_x_axis(tmp_path, grid):
    fig = Figure(figsize=(5, 3), dpi=100, facecolor="white")
    ax = fig.add_subplot()
    x = np.linspace(0, 10, 50)
    ax.plot(x, np.sin(x), color="tab:blue", label="control")
    ax.plot(x, np.cos(x), color="black", label="treated")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.grid(grid)
    fig.subplots_adjust(right=0.7)
    left, right = _render(fig, tmp_path / "f.png")
    span = _span(tmp_path / "f.png")
    assert span["by"] == "axis"
    assert span["x"] == pytest.approx([left, right], abs=0.01)
    assert right < 0.75  # the legend beside it lies beyond its end


def test_a_pie_with_a_black_slice_spans_its_slices_not_an_edge(tmp_path):
    """A black slice's straight edge is a long dark run, but no line: dark on one side."""
    fig = Figure(figsize=(5, 3), dpi=100, facecolor="white")
    ax = fig.add_subplot()
    wedges, _ = ax.pie([3, 2, 4], colors=["black", "tab:grey", "tab:orange"], startangle=90)
    ax.legend(wedges, ["a", "b", "c"], loc="upper left", bbox_to_anchor=(1.0, 1.0))
    canvas = FigureCanvasAgg(fig)
    canvas.print_png(str(tmp_path / "pie.png"))
    extents = [w.get_window_extent(canvas.get_renderer()).extents for w in wedges]
    left, right = min(e[0] for e in extents) / 500, max(e[2] for e in extents) / 500
    span = _span(tmp_path / "pie.png")
    assert span["by"] == "fills"
    assert span["x"] == pytest.approx([left, right], abs=0.02)


def test_a_photograph_and_a_blank_page_have_no_plot(tmp_path):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    assert plot_span(name_grid(noise, SHARES_SIDE)) == {}
    assert plot_span(name_grid(Image.new("RGB", (200, 100), "white"), SHARES_SIDE)) == {}
    assert decode("{}") is None and decode("not json") is None and decode(None) is None


def _legend(box, ticks=((40, 260, 60, 275), (300, 260, 320, 275))):
    """A reading of a 400 x 300 figure: legend words at `box`, x-axis tick labels."""
    lines = [TextLine("control", box, 0.9, "legend")]
    lines += [TextLine(str(i), b, 0.9, "tick") for i, b in enumerate(ticks)]
    return Reading(tuple(lines), (400, 300))


def test_the_plot_span_tells_a_legend_inside_the_plot_from_one_beside_it():
    """The last tick label ends at 320 px; a legend inside the plot's upper right starts at
    336 (beyond it by more than 3% of the width), one beside the plot at 360. By the tick
    labels both are outside; by the x axis (to 340 px) only the second is."""
    readings = [_legend((336, 30, 380, 45)), _legend((360, 30, 396, 45))]
    axis = {"by": "axis", "x": [0.1, 0.85]}
    outside = named_place("a legend outside the plot on the right")
    inside = named_place("a legend in the upper right")
    by_ticks = words_scores(readings, outside, "legend")
    by_axis = words_scores(readings, outside, "legend", [axis, axis])
    assert by_ticks.tolist() == [1.0, 1.0] and by_axis.tolist() == [0.0, 1.0]
    upper_right = words_scores(readings, inside, "legend", [axis, axis])
    assert upper_right[0] > 0.5 and upper_right[1] == 0.0
    # a pie's slices: words that start just past them may still be inside its axes
    pie = {"by": "fills", "x": [0.2, 0.83]}
    assert words_scores(readings, outside, "legend", [pie, pie]).tolist() == [0.0, 1.0]


def test_the_plot_span_overrules_the_patches_on_which_side_of_the_plot_a_legend_is():
    """Where the span puts the legend's words beside the plot, a place inside it scores 0
    whatever the model's patches say, and the reverse; where no span was read (or no
    words), nothing is overruled."""
    readings = [_legend((336, 30, 380, 45)), _legend((360, 30, 396, 45)), None]
    axis = {"by": "axis", "x": [0.1, 0.85]}
    inside = named_place("a legend in the upper right")
    outside = named_place("a legend outside the plot on the right")
    assert elsewhere(readings, inside, "legend", [axis, axis, axis]).tolist() == [
        False, True, False,
    ]  # fmt: skip
    assert elsewhere(readings, outside, "legend", [axis, axis, None]).tolist() == [
        True, False, False,
    ]  # fmt: skip
    assert not elsewhere(readings, inside, "legend", [None, None, None]).any()


def test_an_index_from_before_plots_gains_them_without_reembedding(tmp_path, tiny_encoder):
    (tmp_path / "imgs").mkdir()
    fig = Figure(figsize=(4, 3), dpi=100, facecolor="white")
    fig.add_subplot().plot([0, 1, 2], [1, 3, 2])
    _render(fig, tmp_path / "imgs" / "line.png")
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
        images = store.images("images")
        ids = images.get()["ids"]
        assert decode(images.get(ids=ids)["metadatas"][0]["plot"])["by"] == "axis"
        images.update(ids=ids, metadatas=[{"plot": None}])  # as indexed before
        report = index_paths(
            [tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images"
        )
        after = images.get(ids=ids)["metadatas"][0]
    assert (report.indexed, report.refreshed) == (0, 1)
    assert json.loads(after["plot"])["by"] == "axis"
