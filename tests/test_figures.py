"""The scientific-figure benchmark: boxes agree with pixels, output is a pure function of
the seed, and the query suites answer exactly what they ask."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evident.eval.figures.generate import generate_figures
from evident.eval.figures.render import KIND_NAMES, render_figure
from evident.tools.errors import InputError

N, SEED = 20, 0  # two shuffled blocks of the ten kinds
SPLITS = ("train", "val", "test")
OUTPUTS = ("figures.jsonl", "pairs.jsonl", "train.jsonl", "val.jsonl", "test.jsonl")
NEVER_OCCLUDED = {"title", "xlabel", "ylabel", "legend", "colorbar", "panel"}


@pytest.fixture(scope="module")
def figure_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("figures")
    report = generate_figures(out, N, seed=SEED, workers=1)
    assert report.n_figures == N and sum(report.split_counts.values()) == N
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_boxes_frame_exactly_the_pixels_each_component_paints(figure_set):
    """Re-render with one component hidden: every changed pixel lies inside its box, and
    for parts nothing can cover, the changed pixels reach each side of the box."""
    picked: dict[str, list] = {}
    for record in read_jsonl(figure_set / "figures.jsonl"):
        for position, component in enumerate(record["components"]):
            if len(picked.setdefault(component["name"], [])) < 1:
                picked[component["name"]].append((record, position))
    assert set(picked) >= {"legend", "title", "colorbar", "series", "bar", "wedge", "panel"}
    for name, cases in picked.items():
        for record, position in cases:
            saved = np.asarray(Image.open(figure_set / record["image"]).convert("RGB"))
            index = int(record["id"].removeprefix("fig_"))
            hidden = render_figure(SEED, index, hidden=[position]).pixels
            changed = np.any(saved != hidden, axis=2)
            x0, y0, x1, y1 = record["components"][position]["box"]
            inside = np.zeros_like(changed)
            inside[y0:y1, x0:x1] = True
            where = f"{record['id']} {name} {record['components'][position]['label']!r}"
            assert changed.any(), f"hiding {where} changed nothing"
            assert not (changed & ~inside).any(), f"{where} paints outside its box"
            if name in NEVER_OCCLUDED:
                ys, xs = np.nonzero(changed)
                slack = (xs.min() - x0, ys.min() - y0, x1 - 1 - xs.max(), y1 - 1 - ys.max())
                assert max(slack) <= 5, f"{where} box is loose by {slack} px"


def test_every_box_lies_inside_its_image(figure_set):
    for record in read_jsonl(figure_set / "figures.jsonl"):
        width, height = Image.open(figure_set / record["image"]).size
        assert (width, height) == (record["attributes"]["width"], record["attributes"]["height"])
        assert min(width, height) >= 256 and max(width, height) <= 448
        for component in record["components"]:
            x0, y0, x1, y1 = component["box"]
            assert all(isinstance(v, int) for v in component["box"])
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, component


def test_same_seed_gives_identical_files_in_one_or_many_processes(figure_set, tmp_path):
    generate_figures(tmp_path, N, seed=SEED, workers=2)
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (figure_set / name).read_bytes(), name
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("images/*/*.png"))
    assert ours == sorted(p.relative_to(figure_set) for p in figure_set.glob("images/*/*.png"))
    for path in ours:
        assert (tmp_path / path).read_bytes() == (figure_set / path).read_bytes(), path


def test_a_different_seed_draws_different_figures(figure_set):
    first = read_jsonl(figure_set / "figures.jsonl")[0]
    other = render_figure(SEED + 1, 0)
    assert other.caption != first["caption"]
    saved = np.asarray(Image.open(figure_set / first["image"]).convert("RGB"))
    assert other.pixels.shape != saved.shape or (other.pixels != saved).any()


def test_every_kind_appears_and_splits_are_disjoint(figure_set):
    records = read_jsonl(figure_set / "figures.jsonl")
    assert {r["kind"] for r in records} == set(KIND_NAMES)
    assert len({r["id"] for r in records}) == len({r["image"] for r in records}) == N
    for r in records:
        assert r["image"] == f"images/{r['split']}/{r['id']}.png"
        assert (figure_set / r["image"]).is_file()
    assert [sum(r["split"] == s for r in records) for s in SPLITS] == [14, 2, 4]
    assert len(list(figure_set.glob("images/*/*.png"))) == N


def test_pairs_hold_train_images_only(figure_set):
    train = {r["image"] for r in read_jsonl(figure_set / "figures.jsonl") if r["split"] == "train"}
    pairs = read_jsonl(figure_set / "pairs.jsonl")
    assert {p["image"] for p in pairs} == train and len(pairs) == 2 * len(train)
    assert all(p["caption"] for p in pairs)


def test_queries_point_at_images_of_their_own_split(figure_set):
    records = {r["image"]: r for r in read_jsonl(figure_set / "figures.jsonl")}
    ids = []
    for split in SPLITS:
        queries = read_jsonl(figure_set / f"{split}.jsonl")
        assert {q["level"] for q in queries} == {"caption", "type", "attribute", "component"}
        for q in queries:
            ids.append(q["id"])
            assert q["relevant"] and len(set(q["relevant"])) == len(q["relevant"])
            assert all(records[image]["split"] == split for image in q["relevant"])
            if q["level"] == "caption":
                assert len(q["relevant"]) == 1
                assert records[q["relevant"][0]]["caption"] == q["query"]
            if q["level"] == "component":
                assert set(q["targets"]) == set(q["relevant"])
                for image, boxes in q["targets"].items():
                    known = [c["box"] for c in records[image]["components"]]
                    assert boxes and all(box in known for box in boxes)
            else:
                assert "targets" not in q
    assert len(ids) == len(set(ids))


def test_type_and_attribute_queries_list_every_match(figure_set):
    """Answer sets recomputed straight from the attributes, not from the query code."""
    records = read_jsonl(figure_set / "figures.jsonl")
    for split in SPLITS:
        mine = [r for r in records if r["split"] == split]
        queries = {q["query"]: q["relevant"] for q in read_jsonl(figure_set / f"{split}.jsonl")}
        pies = sorted(r["image"] for r in mine if r["kind"] == "pie")
        assert queries.get("a pie chart", []) == pies
        fitted = sorted(
            r["image"] for r in mine if r["kind"] == "scatter" and r["attributes"]["regression"]
        )
        assert queries.get("a scatter plot with a regression line", []) == fitted
        for r in mine:
            if r["kind"] == "bar" and r["attributes"]["legend"] == "upper left":
                assert r["image"] in queries["a bar chart with a legend in the upper left"]
        legends = sorted(
            r["image"]
            for r in mine
            if any(c["name"] == "legend" for c in r["components"]) and r["kind"] == "line"
        )
        assert queries.get("the legend of a line chart", []) == legends


@pytest.mark.parametrize("n", [0, -3])
def test_a_non_positive_count_is_refused(tmp_path, n):
    with pytest.raises(InputError, match="positive"):
        generate_figures(tmp_path / "out", n)


def test_a_file_as_output_directory_is_refused(tmp_path):
    path = tmp_path / "figures"
    path.write_text("not a directory")
    with pytest.raises(InputError, match="is a file"):
        generate_figures(path, 2)


def test_bad_splits_are_refused(tmp_path):
    with pytest.raises(InputError, match="splits"):
        generate_figures(tmp_path / "out", 2, splits=(0.5, 0.5, 0.5))


def test_a_directory_with_other_files_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="notes.txt"):
        generate_figures(tmp_path, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_previous_figure_set_is_regenerated_in_place(tmp_path):
    generate_figures(tmp_path, 2, seed=3)
    first = (tmp_path / "figures.jsonl").read_bytes()
    generate_figures(tmp_path, 1, seed=3)
    records = read_jsonl(tmp_path / "figures.jsonl")
    assert len(records) == 1
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("images/*/*.png")) == (
        sorted(r["image"] for r in records)
    )
    generate_figures(tmp_path, 2, seed=3)
    assert (tmp_path / "figures.jsonl").read_bytes() == first
