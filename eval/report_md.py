"""report.md: the report's tables for people, every value with its 95% interval.

The localization table puts each heatmap method beside the baselines; the comparison
table gives, per metric, the difference to the best baseline on that metric with its
paired-bootstrap interval (an interval that excludes 0 is a difference the suite can
resolve).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from evident.eval.baselines import BASELINES
from evident.eval.localize import LOCALIZATION_KEYS
from evident.eval.plots import write_plots
from evident.eval.report import ASK_KEYS, LOWER_IS_BETTER, best_baseline
from evident.eval.sanity import SANITY_KEYS

RETRIEVAL_COLUMNS = (
    "recall@1", "recall@5", "recall@10", "precision@5", "capped_precision@5", "mrr", "ndcg@10",
)  # fmt: skip


def _fmt(value, ci=None, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _retrieval(data: dict) -> list[str]:
    rows = [["all", str(data["n_queries"])] + _cells(data["retrieval"], data["retrieval_ci"])]
    for level, values in data["retrieval_by_level"].items():
        cis = data["retrieval_by_level_ci"][level]
        rows.append([level, str(data["n_by_level"][level])] + _cells(values, cis))
    return _table(["level", "queries", *RETRIEVAL_COLUMNS], rows)


def _cells(values: dict, cis: dict) -> list[str]:
    return [_fmt(values[k], cis[k]) for k in RETRIEVAL_COLUMNS]


def _localization(data: dict) -> list[str]:
    loc, cis = data["localization"], data["localization_ci"]
    rows = []
    for m in loc:
        name = f"{m} (baseline)" if m in BASELINES else m
        name += " (default)" if m == data["default_method"] else ""
        rows.append([name] + [_fmt(loc[m][k], cis[m][k]) for k in LOCALIZATION_KEYS])
    keys = [f"{k} ↓" if k in LOWER_IS_BETTER else k for k in LOCALIZATION_KEYS]
    return _table(["method", *keys], rows)


def _versus(data: dict) -> list[str]:
    best = {k: best_baseline(data, k) for k in LOCALIZATION_KEYS}
    if not data["localization_n"]["queries"]:
        return ["No query has target boxes: nothing was localized."]
    if not data["localization_vs_baselines"] or not any(best.values()):
        return ["No baseline was run (add `random` and `centre` to --methods)."]
    header = ["method", *(f"{k} − {best[k] or '–'}" for k in LOCALIZATION_KEYS)]
    rows = []
    for m, versus in data["localization_vs_baselines"].items():
        cells = []
        for k in LOCALIZATION_KEYS:
            d = versus.get(best[k], {}).get(k) if best[k] else None
            cells.append(_fmt(d["diff"], d["ci95"], signed=True) if d else "–")
        rows.append([m, *cells])
    return _table(header, rows)


def _sanity(data: dict) -> list[str]:
    """The randomization test's table (`eval.sanity`), when a method was measured."""
    values, cis = data.get("sanity") or {}, data.get("sanity_ci") or {}
    if not any(v is not None for m in values.values() for v in m.values()):
        return []
    rows = [
        [
            m,
            *(_fmt(values[m][k], cis[m][k]) for k in SANITY_KEYS),
            " / ".join(str(data["sanity_n"][m][k]) for k in SANITY_KEYS),
        ]
        for m in values
    ]
    return [
        "",
        "### Sanity: the maps of a model with re-drawn weights",
        "",
        "Spearman correlation of each map with the same method's map after the last block "
        "and head (top) or the whole image tower (all) were re-drawn (Adebayo et al., 2018). "
        "Near 1: the map shows the image, not what the model learned. Lower is better. "
        "Pairs: maps compared (top / all); a map the re-drawn model leaves flat has no "
        "ranking and is left out.",
        "",
        *_table(["method", "top re-drawn ↓", "all re-drawn ↓", "pairs (top / all)"], rows),
    ]


def _text_regions(data: dict) -> list[str]:
    values, cis = data.get("text_regions") or {}, data.get("text_regions_ci") or {}
    if not values:
        return ["No query named a part made of words, or no words were read in the collection."]
    rows = [
        [part, str(v["queries"]), str(v["images"]),
         _fmt(v["pointing_game"], cis[part]["pointing_game"]), _fmt(v["iou"], cis[part]["iou"])]
        for part, v in values.items()
    ]  # fmt: skip
    return _table(["part named", "queries", "images", "pointing game", "IoU of top region"], rows)


def _colour_regions(data: dict) -> list[str]:
    values, cis = data.get("colour_regions") or {}, data.get("colour_regions_ci") or {}
    if not values:
        return ["No query with target boxes named a colour."]
    rows = [
        [name, str(v["queries"]), str(v["images"]),
         *(_fmt(v[k], cis[name][k]) for k in ("pointing_game", "iou", "supported"))]
        for name, v in values.items()
    ]  # fmt: skip
    header = ["colour named", "queries", "images", "pointing game", "IoU of top region"]
    return _table([*header, "colour check passed"], rows)


def _cited_first(data: dict) -> list[str]:
    c = data.get("cited_first") or {}
    if not c:
        return []
    rows = [["what is cited first", str(c["images"]), _fmt(c["pointing_game"], c["ci95"])]]
    rows += [
        [f"minus {name[3:]} (paired)", "", _fmt(v["diff"], v["ci95"], signed=True)]
        for name, v in c.items() if name.startswith("vs_")
    ]  # fmt: skip
    return [
        "",
        "What the product cites first: the region of a title, axis label or legend the query "
        f"names when one was read ({c['from_text']} images), else the region of a colour it "
        f"names ({c.get('from_colour', 0)} images), else the default method's hottest point.",
        "",
        *_table(["", "images", "pointing game"], rows),
    ]


def _latency(data: dict) -> list[str]:
    lat = data["latency_ms"]
    rows = [
        [stage, _fmt(v["p50"]), _fmt(v["p95"]), _fmt(v["mean"])]
        for stage, v in lat.items()
        if isinstance(v, dict)
    ]
    return _table(["stage (ms)", "p50", "p95", "mean"], rows)


def render_markdown(data: dict, plots: Sequence[str]) -> str:
    n = data["localization_n"]
    lines = [
        f"# Evaluation: {data['suite']}",
        "",
        f"Encoder `{data['encoder']}`, collection `{data['collection']}`, mode `{data['mode']}`, "
        f"{data['n_queries']} queries. Values are means with 95% bootstrap intervals.",
        "",
        "## Retrieval",
        "",
        *_retrieval(data),
        "",
        "## Localization",
        "",
        f"On {n['images']} relevant images of {n['queries']} queries with target boxes, each "
        "explained with the query's embedding (not only when retrieved). ↓: lower is better.",
        "",
        *_localization(data),
        "",
        "### Difference to the best baseline (paired bootstrap 95% interval)",
        "",
        *_versus(data),
        *_sanity(data),
        "",
        "### Text regions (words read at index time)",
        "",
        "The strongest text region the product would cite; a point when its centre is in a "
        "target box.",
        "",
        *_text_regions(data),
        "",
        "### Colour regions (where a colour the query names is drawn)",
        "",
        "The strongest colour region the product would cite; a point when its centre is in a "
        "target box.",
        "",
        *_colour_regions(data),
        *_cited_first(data),
        "",
        "## Explanations shown (top results, default method)",
        "",
        f"Regions per query: {_fmt(data['explained'].get('regions_per_query'))}; share passing "
        "the counterfactual check: "
        + _fmt(data["explained"]["supported_share"], data["explained_ci"]["supported_share"]),
        "",
    ]
    if "ask" in data:
        rows = [[k, _fmt(data["ask"][k], data["ask_ci"][k])] for k in (*ASK_KEYS, "removed_share")]
        lines += ["## Answers (ask mode)", "", *_table(["metric", "value"], rows), ""]
    lines += ["## Latency", "", *_latency(data), ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(data: dict, records: Mapping[str, dict], out_dir: Path) -> list[Path]:
    """report.json, report.md and the plots in `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(data, records, out_dir)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(data, [p.name for p in plots]), encoding="utf-8")
    return [json_path, md_path, *plots]
