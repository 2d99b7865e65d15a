"""A query that asks for a number of bars or boxes ("a bar chart with 5 bars") is ranked
by how many category names were read in each chart: the number is read from the words,
the names are counted in a row or a column, and on drawn charts that differ only in how
many bars they have the one asked for comes first, horizontal or not. One that asks for a
number of lines, slices or series is ranked by how many colours draw series in each
(colours that fill areas, colours the marks reader sees drawing lines or markers)."""

import doctest

import numpy as np
import pytest
from matplotlib.figure import Figure

import evident.tools.counts
from evident.agent.cli import main
from evident.eval.scenes import make_scenes
from evident.graphs.policy import _describe_search
from evident.tools.agent_tools import _search_content
from evident.tools.counts import UNKNOWN, Count, category_count, count_scores, named_count
from evident.tools.ingest.index import index_paths
from evident.tools.ingest.layout import TextLine
from evident.tools.ingest.ocr import Reading, load_reader
from evident.tools.pipeline import open_retrieval, search
from evident.tools.records import Query
from evident.tools.retrieve import search_images
from evident.tools.store import Store
from tests.conftest import write_scenes

NAMES = ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa")


@pytest.mark.parametrize(
    "text,n,what",
    [
        ("a bar chart with 5 bars", 5, "bars"),
        ("A box plot with four boxes", 4, "boxes"),
        ("a chart with 12 categories", 12, "categories"),
        ("bar chart with Three bars", 3, "bars"),
        ("a line chart with 3 lines", 3, "lines"),
        ("a pie chart with six slices", 6, "slices"),
        ("a grouped bar chart comparing 2 series", 2, "series"),
        ("a line chart with a single line", 1, "line"),
    ],
)
def test_a_count_is_read(text, n, what):
    count = named_count(text)
    assert (count.n, count.what) == (n, what)
    assert count.by == ("categories" if what in ("bars", "boxes", "categories") else "series")


@pytest.mark.parametrize(
    "text",
    [
        "a bar chart",
        "a chart with 99 bars",
        "5 bars",
        "",
        "a figure with 3 line charts",
        "a chart with two lines of text",
        "a line chart with grid lines",
    ],  # fmt: skip
)
def test_no_count_is_read_where_none_is_asked_for(text):
    assert named_count(text) is None


def test_doctests():
    assert doctest.testmod(evident.tools.counts).failed == 0


def _line(text, x0, y0, x1, y1, role="tick"):
    return TextLine(text, (x0, y0, x1, y1), 0.9, role)


def test_category_names_are_counted_in_a_row_or_a_column_numbers_are_not():
    row = [_line(t, 60 + 60 * i, 250, 100 + 60 * i, 264) for i, t in enumerate(NAMES[:5])]
    ticks = [_line(str(v), 20, 40 + 40 * i, 36, 52) for i, v in enumerate((0, 5, 10, 15))]
    column = [_line(t, 56 - 7 * len(t), 40 + 50 * i, 56, 54 + 50 * i)
              for i, t in enumerate(NAMES[:4])]  # fmt: skip
    title = [_line("Yield by site", 100, 5, 300, 25, "title")]
    assert category_count(Reading(tuple(row + ticks + title), (400, 300))) == 5
    assert category_count(Reading(tuple(column + title), (400, 300))) == 4
    assert category_count(Reading(tuple(ticks + title), (400, 300))) == 0
    assert category_count(None) == 0
    readings = [Reading(tuple(row), (400, 300)), Reading(tuple(column), (400, 300)), None]
    scores = count_scores(readings, Count("with 5 bars", 5, "bars"))
    assert scores.tolist() == [1.0, UNKNOWN, UNKNOWN]  # four of five: one off, maybe misread
    six = count_scores(readings, Count("with 6 bars", 6, "bars"))
    assert six.tolist() == [UNKNOWN, 0.0, UNKNOWN]


def _bars(path, n, horizontal=False):
    fig = Figure(figsize=(5.5, 3), dpi=100, facecolor="white")  # names apart: read apart
    ax = fig.add_subplot()
    values = np.linspace(3, 9, n)
    (ax.barh if horizontal else ax.bar)(list(NAMES[:n]), values, color="tab:blue")
    ax.set_title("Yield by site")
    (ax.set_ylabel if horizontal else ax.set_xlabel)("site")
    fig.savefig(path, bbox_inches="tight")
    return path


@pytest.fixture(scope="module")
def charts(tmp_path_factory, bundled_encoder, text_embedder):
    """Bar charts of 3 to 6 bars and a horizontal one of 5, their words read, among six
    scenes; indexed with the bundled model."""
    root = tmp_path_factory.mktemp("counts")
    (root / "images").mkdir()
    paths = {n: _bars(root / "images" / f"bars{n}.png", n) for n in (3, 4, 5, 6)}
    paths["5h"] = _bars(root / "images" / "bars5h.png", 5, horizontal=True)
    write_scenes(root / "images", make_scenes(6, seed=9))
    with Store.open(root / "db", create=True) as store:
        index_paths([root / "images"], store=store, encoder=bundled_encoder, collection="figs",
                    text_embedder=text_embedder, ocr="on", reader=load_reader())  # fmt: skip
    return root, paths


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_the_chart_with_the_bars_asked_for_comes_first(charts, bundled_encoder, n):
    root, paths = charts
    with Store.open(root / "db") as store:
        ctx = open_retrieval(store, "figs", model=bundled_encoder)
        result = search(Query(f"a bar chart with {n} bars"), 5, ctx=ctx)
    wanted = {str(paths[n])} | ({str(paths["5h"])} if n == 5 else set())
    assert {h.uri for h in result.hits[: len(wanted)]} == wanted
    assert result.hits[0].scores["count"] == 1.0
    assert result.fusion["count"] | {"weight": 1, "pool": 1} == {
        "where": f"with {n} bars", "n": n, "what": "bars", "by": "categories", "weight": 1,
        "pool": 1,
    }  # fmt: skip


def test_without_words_read_the_count_says_why_and_keeps_the_order(charts, bundled_encoder):
    root, _ = charts
    with Store.open(root / "bare", create=True) as store:
        index_paths([root / "images"], store=store, encoder=bundled_encoder, collection="figs",
                    ocr="off")  # fmt: skip
        counted = _kept_in_order(store, bundled_encoder, "a bar chart with 5 bars", 5)
    assert "evident index --ocr on" in counted.fusion["count"]["why"]


def _kept_in_order(store, encoder, text, k):
    """The search of `text` in `store`'s "figs", checked to have left the first stage's
    order alone (the count not used, weight 0)."""
    counted = search(Query(text), k, ctx=open_retrieval(store, "figs", model=encoder))
    alone = search_images(Query(text), k, store=store, collection="figs", encoder=encoder)
    assert counted.fusion["count"]["weight"] == 0.0
    assert [h.id for h in counted.hits] == [h.id for h in alone.hits]
    return counted


def test_the_cli_and_the_llm_say_the_ranking_counted(charts, capsys):
    root, _ = charts
    assert main(["search", "a bar chart with 4 bars", "--db", str(root / "db"),
                 "--collection", "figs", "--cam", "none"]) == 0  # fmt: skip
    said = " ".join(capsys.readouterr().out.split())  # as wrapped to the terminal, unwrapped
    assert "reordered by the category names read in each: with 4 bars" in said
    art = {
        "query": {"text": "a bar chart with 4 bars"}, "results": [],
        "fusion": {"count": {"where": "with 4 bars", "n": 4, "what": "bars", "weight": 0.33}},
    }  # fmt: skip
    told = _search_content(art).splitlines()[0]
    assert told.endswith("ordered in part by counting the category names read in each: with 4 bars")
    art["fusion"]["count"] |= {"weight": 0.0, "why": "no words were read"}
    assert "category names" not in _search_content(art)


def test_the_answer_says_the_ranking_counted():
    art = {
        "query": {"text": "a bar chart with 4 bars"}, "results": [{"score": 0.5}],
        "fusion": {"count": {"where": "with 4 bars", "n": 4, "what": "bars", "weight": 0.33}},
    }  # fmt: skip
    said = _describe_search(art)
    assert "a third of each score from whether the category names read in each number 4" in said
    art["fusion"]["count"] |= {"weight": 0.0, "why": "no words were read"}
    assert "category names" not in _describe_search(art)


SERIES_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _pie(path, n):
    fig = Figure(figsize=(4, 3.2), dpi=100, facecolor="white")
    ax = fig.add_subplot()
    ax.pie(np.linspace(2, 4, n), colors=SERIES_COLOURS[:n], labels=list(NAMES[:n]))
    ax.set_title("Share by site")
    fig.savefig(path)
    return path


def _lines(path, n):
    fig = Figure(figsize=(4, 3.2), dpi=100, facecolor="white")
    ax = fig.add_subplot()
    x = np.linspace(0, 6, 40)
    for i in range(n):
        ax.plot(x, np.sin(x + i) + 2 * i, color=SERIES_COLOURS[i], linewidth=2, label=NAMES[i])
    ax.set_title("Signal by run")
    ax.set_xlabel("time (s)")
    fig.savefig(path)
    return path


@pytest.fixture(scope="module")
def series_charts(tmp_path_factory, bundled_encoder):
    """Pie charts of 3 to 6 slices and line charts of 1 to 4 lines, no words read; indexed
    with the bundled model (which knows a pie from a line chart, not how many slices)."""
    root = tmp_path_factory.mktemp("series")
    (root / "images").mkdir()
    paths = {("pie", n): _pie(root / "images" / f"pie{n}.png", n) for n in (3, 4, 5, 6)}
    paths |= {("line", n): _lines(root / "images" / f"line{n}.png", n) for n in (1, 2, 3, 4)}
    with Store.open(root / "db", create=True) as store:
        index_paths([root / "images"], store=store, encoder=bundled_encoder, collection="figs",
                    ocr="off")  # fmt: skip
    return root, paths


@pytest.mark.parametrize(
    "kind,n,text",
    [("pie", 3, "a pie chart with 3 slices"), ("pie", 4, "a pie chart with four slices"),
     ("pie", 5, "a pie chart with 5 slices"), ("pie", 6, "a pie chart with 6 slices"),
     ("line", 1, "a line chart with a single line"), ("line", 2, "a line chart with 2 lines"),
     ("line", 3, "a line chart with three lines"), ("line", 4, "a line chart with 4 lines")],
)  # fmt: skip
def test_the_chart_with_the_series_asked_for_comes_first(series_charts, bundled_encoder, kind,
                                                        n, text):  # fmt: skip
    root, paths = series_charts
    with Store.open(root / "db") as store:
        ctx = open_retrieval(store, "figs", model=bundled_encoder)
        result = search(Query(text), 4, ctx=ctx)
    assert result.hits[0].uri == str(paths[kind, n]), [h.uri for h in result.hits]
    assert result.hits[0].scores["count"] == 1.0
    assert result.fusion["count"]["by"] == "series" and result.fusion["count"]["weight"] > 0


def test_series_counts_bring_the_number_asked_for_first(figures_80, bundled_encoder):
    """On 80 figures of a seed training never used, the queries for a number of slices,
    lines or series: of the first R results (R: how many figures are relevant) more are
    right with the count than with the first stage alone."""
    figs, db, queries = figures_80
    counts = {q["id"]: named_count(q["query"]) for q in queries if q["level"] == "attribute"}
    queries = [q for q in queries if counts.get(q["id"]) and counts[q["id"]].by == "series"]
    precision = {"first stage": [], "counted": []}
    with Store.open(db) as store:
        ctx = open_retrieval(store, "images", model=bundled_encoder)
        for q in queries:
            relevant = {str(figs / p) for p in q["relevant"]}
            r = len(relevant)
            ranked = {
                "first stage": search_images(Query(q["query"]), r, store=store,
                                             collection="images", encoder=bundled_encoder),
                "counted": search(Query(q["query"]), r, ctx=ctx),
            }  # fmt: skip
            for name, result in ranked.items():
                precision[name].append(sum(h.uri in relevant for h in result.hits) / r)
    mean = {name: float(np.mean(v)) for name, v in precision.items()}
    # measured (10 queries: slices, lines, grouped bar series): 0.54 -> 0.84
    assert len(queries) >= 8
    assert mean["counted"] >= mean["first stage"] + 0.2, mean


def test_an_index_without_fills_says_why_series_were_not_counted(tmp_path, bundled_encoder):
    (tmp_path / "images").mkdir()
    for n in (3, 5):
        _pie(tmp_path / "images" / f"pie{n}.png", n)
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "images"], store=store, encoder=bundled_encoder,
                    collection="figs", ocr="off")  # fmt: skip
        images = store.images("figs")
        ids = images.get()["ids"]
        images.update(ids=ids, metadatas=[{"fills": None}] * len(ids))  # as indexed before
        counted = _kept_in_order(store, bundled_encoder, "a pie chart with 5 slices", 2)
    assert "evident index again" in counted.fusion["count"]["why"]


def test_the_cli_the_llm_and_the_answer_say_series_were_counted(series_charts, capsys):
    root, _ = series_charts
    assert main(["search", "a pie chart with 4 slices", "--db", str(root / "db"),
                 "--collection", "figs", "--cam", "none"]) == 0  # fmt: skip
    said = " ".join(capsys.readouterr().out.split())
    assert "reordered by the colours each draws its series in: with 4 slices" in said
    count = {"where": "with 4 slices", "n": 4, "what": "slices", "by": "series", "weight": 0.33}
    art = {"query": {"text": "a pie chart with 4 slices"}, "results": [],
           "fusion": {"count": count}}  # fmt: skip
    assert (
        _search_content(art)
        .splitlines()[0]
        .endswith("ordered in part by counting the colours each draws its series in: with 4 slices")
    )
    art["results"] = [{"score": 0.5}]
    assert "whether the colours each draws its series in number 4" in _describe_search(art)
