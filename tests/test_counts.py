"""A query that asks for a number of bars or boxes ("a bar chart with 5 bars") is ranked
by how many category names were read in each chart: the number is read from the words,
the names are counted in a row or a column, and on drawn charts that differ only in how
many bars they have the one asked for comes first, horizontal or not."""

import numpy as np
import pytest
from matplotlib.figure import Figure

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
    ],
)
def test_a_count_is_read(text, n, what):
    count = named_count(text)
    assert (count.n, count.what) == (n, what)


@pytest.mark.parametrize(
    "text", ["a bar chart", "a line chart with 3 lines", "a chart with 99 bars", "5 bars", ""]
)
def test_no_count_is_read_where_none_is_asked_for(text):
    assert named_count(text) is None


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
    assert scores.tolist() == [1.0, 0.0, UNKNOWN]


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
        "where": f"with {n} bars", "n": n, "what": "bars", "weight": 1, "pool": 1,
    }  # fmt: skip


def test_without_words_read_the_count_says_why_and_keeps_the_order(charts, bundled_encoder):
    root, _ = charts
    with Store.open(root / "bare", create=True) as store:
        index_paths([root / "images"], store=store, encoder=bundled_encoder, collection="figs",
                    ocr="off")  # fmt: skip
        ctx = open_retrieval(store, "figs", model=bundled_encoder)
        counted = search(Query("a bar chart with 5 bars"), 5, ctx=ctx)
        alone = search_images(Query("a bar chart with 5 bars"), 5, store=store,
                              collection="figs", encoder=bundled_encoder)  # fmt: skip
    assert counted.fusion["count"]["weight"] == 0.0
    assert "evident index --ocr on" in counted.fusion["count"]["why"]
    assert [h.id for h in counted.hits] == [h.id for h in alone.hits]


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
    assert told.endswith("ordered in part by how many category names each has: with 4 bars")
    art["fusion"]["count"] |= {"weight": 0.0, "why": "no words were read"}
    assert "category names" not in _search_content(art)


def test_the_answer_says_the_ranking_counted():
    art = {
        "query": {"text": "a bar chart with 4 bars"}, "results": [{"score": 0.5}],
        "fusion": {"count": {"where": "with 4 bars", "n": 4, "what": "bars", "weight": 0.33}},
    }  # fmt: skip
    said = _describe_search(art)
    assert "a third of each score from whether the category names read in it number 4" in said
    art["fusion"]["count"] |= {"weight": 0.0, "why": "no words were read"}
    assert "category names" not in _describe_search(art)
