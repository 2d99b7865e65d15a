"""Query suites over one split of the figure benchmark, computed from the figure records.

Four levels, each with an exact answer set drawn from the same records the images came
from:

* caption: one figure's full caption; only captions unique in the split are asked, so
  each has exactly one relevant image;
* type: "a pie chart" -> every pie chart in the split;
* attribute: "a line chart with a legend in the upper left" -> every figure the phrase
  is true of; phrases are generated from each record's attributes, so a figure gets a
  phrase if and only if it matches;
* component: "the legend of a bar chart" -> every figure with that part, with the part's
  pixel boxes as targets.

Kinds are whole-figure kinds: a two-panel figure with a line chart in one panel is not
an answer to "a line chart" (it answers "a two-panel figure with a line chart panel").
"""

from collections import defaultdict

from evident.eval.figures.parts import legend_phrase
from evident.eval.figures.style import KIND_PHRASES, a

COMPONENT_NOUNS = {
    "legend": "the legend of",
    "title": "the title of",
    "colorbar": "the colorbar of",
    "xlabel": "the x-axis label of",
    "ylabel": "the y-axis label of",
    "annotation": "the arrow annotation of",
    "bar": "the bars of",
}
SERIES_NOUNS = {
    "line": "the {color} line in",
    "scatter": "the {color} markers in",
    "errorbar": "the {color} error bars in",
    "histogram": "the {color} distribution in",
    "grouped_bar": "the {color} bars of",
    "box": "the boxes of",
}


def split_queries(records: list[dict]) -> list[dict]:
    """All queries for one split's records, in a fixed order, without ids."""
    return [
        *_caption_queries(records),
        *_grouped("type", records, lambda r: {KIND_PHRASES[r["kind"]]: []}),
        *_grouped("attribute", records, lambda r: dict.fromkeys(attribute_phrases(r), [])),
        *_grouped("component", records, component_phrases),
    ]


def _caption_queries(records: list[dict]) -> list[dict]:
    counts = defaultdict(int)
    for record in records:
        counts[record["caption"]] += 1
    return [
        {"level": "caption", "query": r["caption"], "relevant": [r["image"]]}
        for r in records
        if counts[r["caption"]] == 1
    ]


def _grouped(level: str, records: list[dict], phrases_of) -> list[dict]:
    """One query per phrase: the images whose phrase map holds it (and, for components,
    the boxes listed under it)."""
    targets: dict[str, dict[str, list]] = defaultdict(dict)
    for record in records:
        for phrase, boxes in phrases_of(record).items():
            targets[phrase][record["image"]] = boxes
    queries = []
    for phrase in sorted(targets):
        query = {"level": level, "query": phrase, "relevant": sorted(targets[phrase])}
        if level == "component":
            query["targets"] = {image: targets[phrase][image] for image in query["relevant"]}
        queries.append(query)
    return queries


def component_phrases(record: dict) -> dict[str, list[list[int]]]:
    """E.g. {"the legend of a bar chart": [[x0, y0, x1, y1]], "the bars of ...": [...]}."""
    kind = record["kind"]
    chart = KIND_PHRASES[kind]
    phrases = defaultdict(list)
    for part in record["components"]:
        name, color = part["name"], part.get("color")
        if name == "panel":
            noun = f"the {part['label']} of"
        elif kind == "multi_panel" and name not in COMPONENT_NOUNS:
            continue  # a panel's lines or bars are asked about through single-chart figures
        elif name == "wedge":
            noun = f"the {color} slice of"
        elif part["label"] == "regression line":
            noun = f"the {color} regression line in"
        elif name == "series":
            noun = SERIES_NOUNS[kind].format(color=color)
        else:
            noun = COMPONENT_NOUNS[name]
        phrases[f"{noun} {chart}"].append(part["box"])
    return dict(phrases)


def attribute_phrases(record: dict) -> set[str]:
    """Every attribute phrase true of the figure, e.g. "a scatter plot with a regression line"."""
    kind, attrs = record["kind"], record["attributes"]
    chart = KIND_PHRASES[kind]
    phrases = set()
    if attrs.get("legend"):
        phrases.add(f"{chart} with a {legend_phrase(attrs['legend'])}")
    if attrs.get("has_grid"):
        phrases.add(f"{chart} with grid lines")
    for axis in "xy":
        if attrs.get(f"{axis}scale") == "log":
            phrases.add(f"{chart} with a logarithmic {axis} axis")
    if attrs.get("annotation"):
        phrases.add(f"{chart} with {a(attrs['annotation']['color'])} arrow annotation")
        phrases.add("a chart with an arrow annotation")
    return phrases | _KIND_FACTS[kind](chart, attrs)


def _line_facts(chart: str, attrs: dict) -> set[str]:
    n = attrs["n_series"]
    facts = {f"{chart} with {n} lines" if n > 1 else f"{chart} with a single line"}
    for s in attrs["series"]:
        facts.add(f"{chart} with {a(s['color'])} {s['linestyle']} line")
        if s["marker"]:
            facts.add(f"{chart} with {s['color']} {s['marker']} markers")
    return facts


def _scatter_facts(chart: str, attrs: dict) -> set[str]:
    facts = {f"{chart} with {s['color']} {s['marker']} markers" for s in attrs["series"]}
    facts |= {f"{chart} with hollow markers" for s in attrs["series"] if s["hollow"]}
    if attrs["regression"]:
        facts.add(f"{chart} with a regression line")
        facts.add(f"{chart} with {a(attrs['regression']['color'])} regression line")
    return facts


def _errorbar_facts(chart: str, attrs: dict) -> set[str]:
    return {f"{chart} with {s['color']} {s['marker']} markers" for s in attrs["series"]}


def _histogram_facts(chart: str, attrs: dict) -> set[str]:
    facts = {f"{chart} showing {a(s['color'])} distribution" for s in attrs["series"]}
    if attrs["n_series"] > 1:
        facts.add(f"{chart} with {attrs['n_series']} overlaid distributions")
    if attrs["histtype"] == "step":
        facts.add("a step histogram")
    return facts


def _bar_facts(chart: str, attrs: dict) -> set[str]:
    facts = {
        f"{chart} with {attrs['colors'][0]} bars",
        f"{chart} with {len(attrs['categories'])} bars",
    }
    if attrs["orientation"] == "horizontal":
        facts.add("a horizontal bar chart")
    if attrs["hatch"]:
        facts.add(f"{chart} with hatched bars")
    if attrs["value_labels"]:
        facts.add(f"{chart} with value labels on the bars")
    return facts


def _grouped_bar_facts(chart: str, attrs: dict) -> set[str]:
    facts = {f"{chart} comparing {attrs['n_series']} series"}
    return facts | {f"{chart} with {s['color']} bars" for s in attrs["series"]}


def _box_facts(chart: str, attrs: dict) -> set[str]:
    facts = {
        f"{chart} with {len(attrs['categories'])} boxes",
        f"{chart} with {attrs['colors'][0]} boxes",
    }
    facts.add(f"{chart} with {attrs['median_color']} median lines")
    if attrs["orientation"] == "horizontal":
        facts.add("a horizontal box plot")
    if attrs["notch"]:
        facts.add(f"{chart} with notched boxes")
    return facts


def _pie_facts(chart: str, attrs: dict) -> set[str]:
    facts = {f"{chart} with {attrs['n_slices']} slices"}
    facts |= {f"{chart} with {a(color)} slice" for color in attrs["colors"]}
    if attrs["donut"]:
        facts.add("a donut-style pie chart")
    if attrs["exploded"]:
        facts.add(f"{chart} with one slice pulled out")
    if attrs["percent_labels"]:
        facts.add(f"{chart} with percentage labels")
    return facts


def _heatmap_facts(chart: str, attrs: dict) -> set[str]:
    facts = {f"{chart} with the {attrs['colormap']} colour map"}
    if attrs["values_shown"]:
        facts.add(f"{chart} with values written in the cells")
    return facts


def _multi_panel_facts(chart: str, attrs: dict) -> set[str]:
    facts = {f"{chart} with panels {attrs['layout']}"}
    return facts | {f"{chart} with {KIND_PHRASES[p['kind']]} panel" for p in attrs["panels"]}


_KIND_FACTS = {
    "line": _line_facts,
    "scatter": _scatter_facts,
    "errorbar": _errorbar_facts,
    "histogram": _histogram_facts,
    "bar": _bar_facts,
    "grouped_bar": _grouped_bar_facts,
    "box": _box_facts,
    "pie": _pie_facts,
    "heatmap": _heatmap_facts,
    "multi_panel": _multi_panel_facts,
}
