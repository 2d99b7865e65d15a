"""Marks: marker shapes and line styles read per colour at indexing time, asked for by the
query, weighed by search — a reader that learns them in seconds, the bundled reader on
figures it never saw, and search with and without them."""

from __future__ import annotations

import doctest
import json
import random
import warnings

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

import evident.eval.training.marks_data
import evident.tools.marks
from evident.agent.render import fusion_note
from evident.eval.figures.render import render_figure
from evident.eval.training.marks_data import labels
from evident.eval.training.marks_model import batches, crops, fit, measure
from evident.tools import marks
from evident.tools.agent_tools import _search_content
from evident.tools.colours import NAMES, SHARES_SIDE, name_grid
from evident.tools.hybrid import NEAR, Weights, confidence, fuse, nearness
from evident.tools.ingest import marks_reader
from evident.tools.ingest.index import index_paths
from evident.tools.records import Query
from evident.tools.retrieve import search_images
from evident.tools.store import Store
from tests.agent_helpers import grounded_answer


def test_doctests():
    assert doctest.testmod(evident.tools.marks).failed == 0
    assert doctest.testmod(evident.eval.training.marks_data).failed == 0
    assert doctest.testmod(marks_reader).failed == 0


def _drawing(rng: np.random.Generator, label: str, side: int = 96) -> np.ndarray:
    """A colour's mask: six markers of one shape, or a line of one style, at random."""
    im = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(im)
    if label in ("circle", "square"):
        for x, y in rng.integers(8, side - 8, (6, 2)):
            box = (x - 3, y - 3, x + 3, y + 3)
            (draw.ellipse if label == "circle" else draw.rectangle)(box, fill=1)
    else:
        y0, y1 = rng.integers(10, side - 10, 2)
        dash = side if label == "solid" else 7
        for x in range(0, side, dash + 4):
            t0, t1 = x / side, min(x + dash, side) / side
            draw.line((x, y0 + t0 * (y1 - y0), x + dash, y0 + t1 * (y1 - y0)), fill=1, width=2)
    return np.asarray(im, dtype=np.uint8)


def test_a_reader_trained_for_seconds_tells_shapes_and_styles_apart():
    """The network and the recipe's training pass, on drawn masks: circles from squares and
    a solid line from a dashed one, on drawings it was not trained on."""
    rng = np.random.default_rng(0)
    kinds = ("circle", "square", "solid", "dashed")
    # grids hold colour-name indices: the mask is where the grid says "red"
    red = NAMES.index("red")

    def examples(n):
        grids, items = [], []
        for j in range(n):
            label = kinds[j % len(kinds)]
            grids.append(np.where(_drawing(rng, label) > 0, red, len(NAMES)))
            items.append((j, "red", np.array([m == label for m in marks.LABELS], np.float32)))
        return grids, items

    grids, items = examples(256)
    torch.manual_seed(0)
    net = marks_reader.MarksNet()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(10):
        fit(net, opt, None, batches(items, grids, 16))
    held_grids, held_items = examples(64)
    check = measure(net, held_grids, held_items)
    # measured: every label's average precision 0.99-1.0, all four right on 0.97 (0.89 read once)
    assert check["exact"] >= 0.8, check
    for label in kinds:
        assert check["average_precision"][label] >= 0.95, check


def test_training_crops_show_the_colour_they_train_on():
    """A crop is a square of the asked side inside the figure (a smaller figure is padded)
    around a pixel of its colour, so it always shows some of that colour's ink and none of
    another's; its target is the colour's."""
    red, blue = NAMES.index("red"), NAMES.index("blue")
    grid = np.full((300, 420), len(NAMES))
    grid[40:44, 10:400] = red  # a red line along the top
    grid[250:258, 380:388] = blue  # one blue square, bottom right
    small = np.full((60, 90), len(NAMES))
    small[30, 5:80] = red
    grids = [grid, small]
    target = np.array([m == "solid" for m in marks.LABELS], np.float32)
    items = [(0, "red", target), (0, "blue", 1 - target), (1, "red", target)] * 8
    rng = random.Random(0)
    batched = list(crops(items, grids, 6, 128, rng))
    assert len(batched) == 4
    for start, (x, y) in zip(range(0, len(items), 6), batched, strict=True):
        assert torch.equal(y, torch.from_numpy(np.stack([t for *_, t in items[start : start + 6]])))
        assert x.shape[1:] == (1, 128, 128)
        assert (x.flatten(1).sum(1) > 0).all()  # each shows its colour's ink
        assert x.max() == 1.0 and set(x.unique().tolist()) <= {0.0, 1.0}
    blue_crops = next(crops([items[1]] * 4, grids, 4, 128, rng))[0]
    assert (blue_crops.flatten(1).sum(1) == 64).all()  # the whole square, no red


def test_an_arrow_colours_crops_are_cut_around_its_annotation():
    """A colour labelled with its figure's arrow is cut around a pixel inside the
    annotation's box, not anywhere along its series, so the square shows the arrow (half
    the time when it also draws a series, whose labels it carries too); other colours,
    and a figure whose box is not known, are cut anywhere along their ink."""
    grey = NAMES.index("grey")
    grid = np.full((300, 420), len(NAMES))
    grid[20:24, 10:410] = grey  # a grey series along the top: most of the colour's ink
    grid[250:254, 300:340] = grey  # the annotation's words and arrow, bottom right
    arrow = np.array([m == "arrow" for m in marks.LABELS], np.float32)
    items = [(0, "grey", arrow)] * 16
    rng = random.Random(0)
    x, _ = next(crops(items, [grid], 16, 128, rng, {0: [290, 240, 350, 260]}))
    assert (x[:, 0, -50:, :].flatten(1).sum(1) > 0).all()  # every square shows the arrow
    x, _ = next(crops(items, [grid], 16, 128, rng))  # no box: anywhere, mostly on the series
    assert (x[:, 0, :30, :].flatten(1).sum(1) > 0).sum() >= 12
    solid = np.array([m == "solid" for m in marks.LABELS], np.float32)
    x, _ = next(crops([(0, "grey", solid)] * 16, [grid], 16, 128, rng, {0: [290, 240, 350, 260]}))
    assert (x[:, 0, :30, :].flatten(1).sum(1) > 0).sum() >= 12  # the box is the arrow's only
    both = np.maximum(arrow, solid)  # the arrow's colour also draws a series: some of each
    x, _ = next(crops([(0, "grey", both)] * 32, [grid], 32, 128, rng, {0: [290, 240, 350, 260]}))
    on_arrow = (x[:, 0, -50:, :].flatten(1).sum(1) > 0).sum()
    assert 6 <= on_arrow <= 26, on_arrow


def test_labels_say_what_each_colour_is_drawn_with():
    scatter = {
        "series": [{"color": "cyan", "marker": "circle"}, {"color": "red", "marker": "star"}],
        "regression": {"color": "red", "linestyle": "dashed"},
    }
    assert labels("scatter", scatter) == {"cyan": ["circle"], "red": ["dashed", "star"]}
    errorbar = {
        "series": [{"color": "grey", "marker": "plus", "linestyle": None}],
        "annotation": {"color": "red", "text": "peak"},
    }
    assert labels("errorbar", errorbar) == {"grey": ["plus"], "red": ["arrow"]}


# The first 24 line charts and scatter plots of seed 777 and its first 14 figures of those
# kinds or error-bar plots with an arrow annotation (found once by rendering the first 60
# of those kinds; the fixture checks that they still are)
UNSEEN = (1, 9, 14, 19, 20, 25, 33, 38, 47, 48, 54, 55, 59, 63, 69, 71, 75, 82, 84, 92, 97, 100,
          109, 112, 118, 121, 122, 132, 144, 154, 183, 184, 197)  # fmt: skip


@pytest.fixture(scope="module")
def unseen():
    """Line charts, scatter and error-bar plots of a seed neither training nor the benchmark
    used (777), each with what the bundled reader reads in it: the first 24 line charts and
    scatter plots, and the first 14 with an arrow annotation."""
    if marks_reader.reader() is None:
        pytest.fail("the bundled marks reader is missing (tools/models/evident-figures/marks.pt)")
    out, series, annotated = [], 0, 0
    for index in UNSEEN:
        fig = render_figure(777, index)
        wanted = fig.kind in ("line", "scatter") and series < 24
        arrow = bool(fig.attributes.get("annotation")) and annotated < 14
        drawn = fig.kind in ("line", "scatter", "errorbar") and (wanted or arrow)
        assert drawn, "the generator changed: choose UNSEEN again"
        out.append((fig, marks_reader.read_marks(Image.fromarray(fig.pixels)), wanted, arrow))
        series, annotated = series + wanted, annotated + arrow
    assert (series, annotated) == (24, 14), "the generator changed: choose UNSEEN again"
    return out


def test_the_bundled_reader_reads_figures_it_never_saw(unseen):
    """For each colour a series is drawn in, the marker shape or line style the reader is
    surest of is one drawn there."""
    right, asked = [], 0
    for fig, read, _, _ in (u for u in unseen if u[2]):
        for colour, drawn in labels(fig.kind, fig.attributes).items():
            asked += 1
            for group in (marks.MARKS, marks.LINES):
                truth = [m for m in drawn if m in group]
                if truth:
                    probs = read.get(colour, {})
                    best = max(group, key=lambda m: probs.get(m, 0.0))
                    right.append(best in truth)
    assert asked >= 40
    # measured: 0.93 of 87 reading four views (`marks_reader.read`), 0.94 reading each mask
    # and its mirror image only (0.90 reading it once; the
    # reader trained on the tinted colour names: 0.89 before them, 0.93 with the reader whose
    # arrow squares lay anywhere along their colour, 0.82 with the narrower one before that)
    assert np.mean(right) >= 0.85, np.mean(right)


def test_the_bundled_reader_finds_the_colour_of_an_arrow_annotation(unseen):
    """Where an arrow's colour holds enough ink to be read (thin red words can read as
    pink), it is the colour the reader is surest draws an arrow."""
    found, surest = [], []
    for fig, read, _, _ in (u for u in unseen if u[3]):
        colour = fig.attributes["annotation"]["color"]
        found.append(colour in read)
        if found[-1]:
            surest.append(max(read, key=lambda c: read[c].get("arrow", 0.0)) == colour)
    # measured: read in 12 of 14, and of those the surest in 12 reading four views, 10
    # reading each mask and its mirror image (9 reading it once; the three readers before:
    # 12 and 10, 12 and 8, 10 and 7)
    assert len(found) == 14 and np.mean(found) >= 0.6 and np.mean(surest) >= 0.6, (found, surest)


def _search(db, encoder, text, k=5, weights=None):
    with Store.open(db) as store:
        return search_images(
            Query(text), k, store=store, collection="images", encoder=encoder,
            weights=weights or Weights(),
        )  # fmt: skip


def test_marks_bring_the_named_marker_and_line_style_into_the_results(figures_80, bundled_encoder):
    """On 80 figures of a seed training never used, the queries that name a marker shape, a
    line style or an arrow ("a scatter plot with olive star markers", "a line chart with a
    red dashed line", "a scatter plot with a red regression line", "a chart with an arrow
    annotation"): with the marks signal the first result is right more often, and more of
    the top five are relevant."""
    figs, db, queries = figures_80
    queries = [q for q in queries if q["level"] == "attribute" and marks.named_marks(q["query"])]
    first, precision = {}, {}
    for name, weights in {"without": Weights(marks=0.0), "with marks": Weights()}.items():
        found, top = [], []
        for q in queries:
            hits = _search(db, bundled_encoder, q["query"], 5, weights).hits
            relevant = {str(figs / p) for p in q["relevant"]}
            found.append(hits[0].uri in relevant)
            top.append(sum(h.uri in relevant for h in hits) / min(5, len(relevant)))
        first[name], precision[name] = float(np.mean(found)), float(np.mean(top))
    # measured (65 queries): first result right 0.34 -> 0.95, capped precision@5 0.73 -> 0.98
    # reading four views (0.94 and 0.97 reading each mask and its mirror image only), with
    # details counted on the kind asked for (`hybrid.NEAR`; before, 0.34 -> 0.91 and
    # 0.68 -> 0.97), reading each mask and its mirror image (0.94 and 0.97 reading it once;
    # 0.82 and 0.96 with the reader before the tinted colour names, 0.82 and 0.97 with the
    # wider reader before that; 0.83 and 0.98 with the narrower one)
    assert len(queries) >= 40
    assert first["with marks"] >= first["without"] + 0.25, first
    assert precision["with marks"] >= precision["without"] + 0.15, precision
    res = _search(db, bundled_encoder, queries[0]["query"])
    assert res.fusion["marks"]["names"] == [
        " ".join(filter(None, pair)) for pair in marks.named_marks(queries[0]["query"])
    ]
    assert all("marks" in h.scores for h in res.hits)


def _scatter(path, shape: str) -> None:
    """A scatter plot of blue markers of one shape."""
    im = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(im)
    rng = np.random.default_rng(len(shape))
    draw.line((30, 210, 300, 210), fill="black", width=1)
    draw.line((30, 20, 30, 210), fill="black", width=1)
    for x, y in rng.integers(50, 190, (25, 2)):
        box = (x - 3, y - 3, x + 3, y + 3)
        if shape == "circle":
            draw.ellipse(box, fill=(31, 119, 180))
        else:
            draw.rectangle(box, fill=(31, 119, 180))
    im.save(path)


def test_an_index_from_before_marks_gains_them_without_reembedding(tmp_path, tiny_encoder):
    (tmp_path / "imgs").mkdir()
    for shape in ("circle", "square"):
        _scatter(tmp_path / "imgs" / f"{shape}.png", shape)
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
        images = store.images("images")
        ids = images.get()["ids"]
        before = images.get(ids=ids, include=["embeddings"])["embeddings"]
        by = images.get(ids=ids, include=["metadatas"])["metadatas"][0]["marks_by"]
        assert by == marks_reader.version()
        # as indexed before marks were read; and as read by another reader
        images.update(ids=ids, metadatas=[{"marks": None, "marks_by": None}] * len(ids))
    res = _search(tmp_path / "db", tiny_encoder, "blue square markers")
    assert "marks" not in res.fusion  # nothing to weigh: no error
    with Store.open(tmp_path / "db") as store:
        report = index_paths(
            [tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images"
        )
        after = store.images("images").get(ids=ids, include=["embeddings", "metadatas"])
    assert (report.indexed, report.refreshed) == (0, 2)
    np.testing.assert_array_equal(after["embeddings"], before)
    assert all(m["marks_by"] == by for m in after["metadatas"])
    read = {m["uri"].rsplit("/", 1)[1]: json.loads(m["marks"]) for m in after["metadatas"]}
    for shape in ("circle", "square"):
        probs = read[f"{shape}.png"]["blue"]
        other = "square" if shape == "circle" else "circle"
        assert probs.get(shape, 0.0) > probs.get(other, 0.0), read
    alone = Weights(image=0.0, colour=0.0)  # the tiny encoder's cosines are noise
    for shape in ("circle", "square"):
        res = _search(tmp_path / "db", tiny_encoder, f"blue {shape} markers", 2, alone)
        assert res.hits[0].uri.endswith(f"{shape}.png"), [h.uri for h in res.hits]
    with Store.open(tmp_path / "db") as store:  # read by another reader: read again
        images = store.images("images")
        images.update(ids=ids, metadatas=[{"marks": "{}", "marks_by": "another"}] * len(ids))
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
        again = images.get(ids=ids, include=["metadatas"])["metadatas"]
    assert all(json.loads(m["marks"]) and m["marks_by"] == by for m in again), again


def test_a_photo_is_not_read_and_without_a_reader_nothing_is(tmp_path, tiny_encoder, monkeypatch):
    (tmp_path / "imgs").mkdir()
    noise = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tmp_path / "imgs" / "photo.png")
    _scatter(tmp_path / "imgs" / "circle.png", "circle")
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
        got = store.images("images").get(include=["metadatas"])["metadatas"]
    read = {m["uri"].rsplit("/", 1)[1]: json.loads(m["marks"]) for m in got}
    assert read["photo.png"] == {} and read["circle.png"]
    monkeypatch.setattr(marks_reader, "reader", lambda: None)
    with Store.open(tmp_path / "db2", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
        got = store.images("images").get(include=["metadatas"])["metadatas"]
        report = index_paths(
            [tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images"
        )
    assert all("marks" not in m for m in got)
    assert report.unchanged == 2  # no reader: nothing to read again
    res = _search(tmp_path / "db2", tiny_encoder, "blue circle markers")
    assert "marks" not in res.fusion


def test_fills_are_not_read_and_the_lines_beside_them_are():
    """Filled areas draw no marks: a drawing of filled shapes is not read at all, and in a
    line chart a filled square's colour is skipped while the line is read."""
    shapes = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((30, 40, 130, 140), fill=(214, 39, 40))
    draw.rectangle((170, 90, 290, 200), fill=(31, 119, 180))
    draw.line((0, 230, 320, 230), fill=(127, 127, 127), width=2)
    assert marks_reader.read_marks(shapes) == {}
    chart = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(chart)
    draw.line((30, 210, 300, 210), fill="black", width=1)
    draw.line((30, 20, 30, 210), fill="black", width=1)
    xs = np.linspace(40, 290, 60)
    draw.line([(x, 120 + 60 * np.sin(x / 30)) for x in xs], fill=(214, 39, 40), width=2)
    draw.rectangle((240, 30, 267, 57), fill=(127, 127, 127))
    grid = name_grid(chart)
    assert marks_reader.filled(grid, "grey") and not marks_reader.filled(grid, "red")
    read = marks_reader.read_marks(chart)
    assert (
        "grey" not in read and max(marks.LINES, key=lambda m: read["red"].get(m, 0.0)) == "solid"
    ), read


def test_a_line_panel_beside_a_bar_panel_is_read_and_the_bars_are_not():
    """A figure whose bar panel holds most of its ink is not a drawing as a whole, but its
    line panel, the half beside, is read; bars filling both halves are not read at all."""

    def bars(draw: ImageDraw.ImageDraw, left: int) -> None:
        for x, top in zip(range(left + 40, left + 300, 60), (60, 30, 90, 45), strict=False):
            draw.rectangle((x, top, x + 45, 220), fill=(31, 119, 180))
        draw.line((left + 30, 221, left + 300, 221), fill="black", width=1)

    figure = Image.new("RGB", (640, 240), "white")
    draw = ImageDraw.Draw(figure)
    bars(draw, 0)
    draw.line((350, 210, 620, 210), fill="black", width=1)
    draw.line((350, 20, 350, 210), fill="black", width=1)
    xs = np.linspace(360, 610, 60)
    draw.line([(x, 120 + 60 * np.sin(x / 30)) for x in xs], fill=(214, 39, 40), width=2)
    assert not marks_reader.drawing(name_grid(figure, SHARES_SIDE))  # the bars hold most ink
    read = marks_reader.read_marks(figure)
    assert "blue" not in read and "red" in read, read
    assert max(marks.LINES, key=lambda m: read["red"].get(m, 0.0)) == "solid", read
    bars(draw, 320)  # now both halves hold bars: nothing to read
    assert marks_reader.read_marks(figure) == {}


def test_tiny_and_odd_images_read_nothing_and_warn_nothing():
    """Images too small to hold a panel, a pie or a mark, and noise, read as nothing, with
    no warning (an empty half once averaged an empty slice)."""
    rng = np.random.default_rng(0)
    odd = [Image.new("RGB", (1, 1), "white"), Image.new("RGB", (3, 3), (214, 39, 40)),
           Image.fromarray(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)),
           Image.new("RGB", (16, 3), (31, 119, 180))]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [marks_reader.read_marks(im) for im in odd] == [{}] * len(odd)


def _pie(path, colours, pulled=None, *, donut=False, percent=False) -> None:
    """A pie of `colours` (white edges between the slices, as matplotlib draws them for the
    benchmark), the slice at `pulled` pulled out by a tenth of the radius."""
    fig = Figure(figsize=(4, 3), dpi=100, facecolor="white")
    ax = fig.add_subplot()
    ax.pie(
        [30, 25, 20, 15, 10][: len(colours)], colors=[f"tab:{c}" for c in colours],
        explode=[0.1 if i == pulled else 0.0 for i in range(len(colours))],
        labels=[f"group {i}" for i in range(len(colours))],
        autopct="%1.0f%%" if percent else None, startangle=90,
        wedgeprops={"linewidth": 1, "edgecolor": "white"} | ({"width": 0.45} if donut else {}),
    )  # fmt: skip
    ax.set_title("Site 4: shares")
    FigureCanvasAgg(fig).print_png(str(path))


def test_a_slice_pulled_out_of_a_pie_is_read_in_its_colour(tmp_path):
    """The slice pulled out is read, in the colour it is drawn in, from pies and donuts;
    a pie with none pulled out, and a drawing of a filled disc beside other shapes, show
    none."""
    cases = [
        (("blue", "orange", "green", "red"), 1, False, True, "orange"),
        (("purple", "green", "blue"), 2, True, False, "blue"),
        (("red", "cyan", "olive", "pink", "brown"), 4, False, False, "brown"),
        (("blue", "orange", "green", "red"), None, False, True, None),
        (("purple", "green", "blue"), None, True, False, None),
    ]
    for n, (colours, pulled, donut, percent, wanted) in enumerate(cases):
        _pie(tmp_path / f"{n}.png", colours, pulled, donut=donut, percent=percent)
        read = marks_reader.read_marks(Image.open(tmp_path / f"{n}.png"))
        got = [c for c, m in read.items() if marks.PULLED in m]
        assert got == ([wanted] if wanted else []), (n, read)
    shapes = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((60, 40, 200, 180), fill=(214, 39, 40))
    draw.rectangle((205, 100, 240, 135), fill=(31, 119, 180))
    draw.ellipse((110, 90, 150, 130), fill=(44, 160, 44))
    assert marks_reader.read_marks(shapes) == {}


def test_a_query_for_a_pulled_out_slice_finds_those_pies_first(tmp_path, tiny_encoder):
    """ "A pie chart with one slice pulled out" ranks the pies with one before those
    without (the marks alone rank: a random encoder's image side is noise), and names the
    mark it weighed."""
    (tmp_path / "imgs").mkdir()
    for name, pulled in (("plain-a", None), ("pulled-a", 0), ("plain-b", None), ("pulled-b", 2)):
        _pie(tmp_path / "imgs" / f"{name}.png", ("blue", "orange", "green", "red"), pulled)
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
    query = "a pie chart with one slice pulled out"
    res = _search(tmp_path / "db", tiny_encoder, query, 4, Weights(image=0.0))
    assert {h.uri.split("/")[-1] for h in res.hits[:2]} == {"pulled-a.png", "pulled-b.png"}
    assert res.fusion["marks"]["names"] == ["pulled-out slice"]


@pytest.mark.slow
def test_the_recipe_writes_a_reader_and_resumes(tmp_path):
    from evident.eval.training.marks_model import build  # noqa: PLC0415

    settings = {"n": 12, "val": 6, "epochs": 1, "whole_epochs": 1, "batch": 8}
    recipe = build(tmp_path, settings)
    assert (tmp_path / "marks.pt").exists() and recipe["figures"] == 12
    assert json.loads((tmp_path / "marks.json").read_text())["check"]["colours"] > 0
    state = torch.load(tmp_path / "marks_state.pt", weights_only=False)
    assert state["epoch"] == 2  # one on crops, one on whole cuts
    again = build(tmp_path, settings)  # resumes after its last epoch: nothing to train
    assert again["seconds"]["train"] <= recipe["seconds"]["train"] + 1
    assert evident.eval.training.marks_data.load(tmp_path / "marks" / "train", 12)[1]


def test_the_llm_and_the_cli_are_told_the_marks_counted():
    fusion = {"marks": {"weight": 0.2, "names": ["cyan circle", "dashed"]}}
    art = {"query": {"text": "cyan circle markers and a dashed line"}, "results": []}
    told = _search_content(art | {"fusion": fusion}).splitlines()[0]
    assert told.endswith("read in each figure: cyan circle, dashed")
    assert "arrows read" not in _search_content(art)
    assert fusion_note(fusion).endswith("read in each figure: cyan circle, dashed")


def test_the_answer_says_the_ranking_weighed_the_marks(figures_80, bundled_encoder, tmp_path):
    _, db, _ = figures_80
    answer = grounded_answer(db, bundled_encoder, tmp_path / "out",
                             "a scatter plot with cyan circle markers")  # fmt: skip
    assert "weighing the marks read in each figure (cyan circle)" in answer["answer"]


def test_a_detail_counts_only_on_figures_of_the_kind_asked_for():
    """A query names a kind and a detail ("a scatter plot with a grey arrow annotation"):
    the marks read with certainty on a figure the model sees as another kind (its image
    cosine far below the best) do not lift it above the figures of that kind; when the
    model does not know the query, the image side says nothing of kinds and the marks lead.
    The JSON names the band."""
    ids = ["scatter", "line", "other scatter"]
    raw = {
        "image": {"scatter": 0.50, "line": 0.12, "other scatter": 0.46},
        "marks": {"scatter": 0.6, "line": 1.0, "other scatter": 0.0},
    }
    known = {"image": confidence(0.9, (0.4, 0.45))}
    fused, parts, fusion = fuse(ids, raw, Weights(), known)
    assert [ids[j] for j in np.argsort(-fused)] == ["scatter", "other scatter", "line"]
    assert parts[1]["marks"] == 0.0 and parts[0]["marks"] > 0  # 0.38 below: beyond NEAR
    assert fusion["marks"]["near"] == list(NEAR)
    unknown = {"image": confidence(0.3, (0.4, 0.45))}
    fused, parts, fusion = fuse(ids, raw, Weights(), unknown)
    assert ids[int(np.argmax(fused))] == "line" and "near" not in fusion["marks"]
    assert nearness([0.5, 0.3, 0.225, 0.1]).tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0])
