"""The evaluation report: per-query records -> report.json, report.md and PNG plots.

report.json (plain numbers at the documented keys; None where nothing was measured):

    retrieval            {"recall@1", "recall@5", "recall@10", "success@1", "success@5",
                          "success@10", "precision@5", "capped_precision@5", "mrr",
                          "ndcg@10"}: means over queries
    retrieval_by_level   {LEVEL: the same}
    localization         {METHOD: {"pointing_game", "pointing_game_15px",
                          "pointing_game_patches", "energy_pointing_game", "iou",
                          "deletion_auc", "insertion_auc", "supported_share"}}:
                          `pointing_game_15px` counts a peak within 15 pixels of a target
                          (Zhang et al.'s definition), the other two only a peak inside
                          it; the first two on the map drawn on the image's ink as shown,
                          `pointing_game_patches` on the model's patches alone
    localization_vs_baselines  {METHOD: {BASELINE: {KEY: {"diff", "ci95"}}}}
    sanity               {METHOD: {"randomized_top_rank_corr", "randomized_all_rank_corr"}}:
                          the model parameter randomization test (`eval.sanity`): mean
                          Spearman correlation of each map with the one drawn after the
                          last block (top) or the whole image tower (all) was re-drawn;
                          lower is better, the baselines are not measured; `sanity_n`
                          the (query, image) pairs with a non-constant map on both sides
    cited_first          {"pointing_game", "ci95", "vs_random"|"vs_centre": {"diff", "ci95"},
                          "images", "from_text", "from_colour"}: what the product cites
                          first (a named part's text region, else a named colour's
                          region, else the default method's hottest point)
    text_regions         {"all"|PART: {"pointing_game", "iou", "queries", "images"}}: the
                          top text region on queries naming a title, axis label, legend
                          or annotation (collections indexed with words only)
    colour_regions       {"all"|COLOUR: {"pointing_game", "iou", "supported", "queries",
                          "images"}}: the top colour region on queries naming a colour
    explained            the product path (top `explain_top` hits, default method):
                          regions shown per result, share that pass the counterfactual
    ask                  (ask mode) citation validity, support, coverage, relevance
    latency_ms           {"p50", "p95"} of search (ask mode: of the whole answer), and
                          {"search"|"explain"|"localize"|"ask": {"p50", "p95", "mean"}}
    *_ci                 beside each block above: the same keys with [lo, hi], a 95%
                          percentile bootstrap interval (1000 resamples, seed from the config)

Localization values are means over (query, image) pairs, except `supported_share`, the
share of all regions that pass their counterfactual check; their intervals resample
queries (the images of one query are not independent), with one set of resampled queries
shared by every method, so differences between methods are paired. Lower is better for
`deletion_auc` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evident.eval.baselines import BASELINES
from evident.eval.localize import LOCALIZATION_KEYS
from evident.eval.metrics import (
    RETRIEVAL_KEYS,
    bootstrap_ci,
    bootstrap_indices,
    difference_ci,
    percentiles,
)
from evident.eval.sanity import SANITY_KEYS
from evident.eval.suite import SuiteQuery
from evident.tools.evidence.text_regions import LEADS

N_BOOT = 1000
LOWER_IS_BETTER = frozenset({"deletion_auc"})
ASK_KEYS = (
    "citation_validity", "citation_support", "citation_coverage", "citation_relevance",
    "takeover_rate",
)  # fmt: skip


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [_r(ci[0]), _r(ci[1])]


def _block(columns: Mapping[str, tuple], idx: np.ndarray) -> tuple[dict, dict]:
    """`(values, ci)` for named `(sums, counts)` columns over the same resampled units."""
    values, cis = {}, {}
    for key, (sums, counts) in columns.items():
        total = np.sum(counts) if counts is not None else len(sums)
        values[key] = _r(np.sum(sums) / total) if total else None
        cis[key] = _ci(bootstrap_ci(sums, counts, indices=idx))
    return values, cis


def build_report(
    config: dict, queries: Sequence[SuiteQuery], records: Mapping[str, dict], *, default_method: str
) -> dict:
    """Aggregate the records of `queries` (those evaluated) into the report's content."""
    done = [records[q.id] for q in queries if q.id in records]
    seed = int(config.get("seed", 0))
    report: dict = {
        "suite": config["suite"],
        "encoder": config["encoder"],
        "collection": config["collection"],
        "mode": config["mode"],
        "default_method": default_method,
        "n_queries": len(done),
        "n_by_level": {lv: sum(r["level"] == lv for r in done) for lv in _levels(done)},
    }
    report["retrieval"], report["retrieval_ci"] = _retrieval(done, seed)
    report["retrieval_by_level"], report["retrieval_by_level_ci"] = {}, {}
    for level in _levels(done):
        rows = [r for r in done if r["level"] == level]
        values, cis = _retrieval(rows, seed)
        report["retrieval_by_level"][level], report["retrieval_by_level_ci"][level] = values, cis
    report.update(_localization(done, config["methods"], seed))
    report.update(_sanity(done, config["methods"], seed))
    report["text_regions"], report["text_regions_ci"] = _text_regions(done, seed)
    report["colour_regions"], report["colour_regions_ci"] = _named_regions(
        done, "colour_localization", "colours", ("pointing_game", "iou", "supported"), seed
    )
    report["cited_first"] = _cited_first(done, default_method, config["methods"], seed)
    report["explained"], report["explained_ci"] = _explained(done, seed)
    if config["mode"] == "ask":
        report["ask"], report["ask_ci"] = _ask(done, seed)
    report["latency_ms"] = _latency(done)
    return report


def _levels(rows: Sequence[dict]) -> list[str]:
    return sorted({r["level"] for r in rows})


def _retrieval(rows: Sequence[dict], seed: int) -> tuple[dict, dict]:
    idx = bootstrap_indices(len(rows), N_BOOT, seed)
    cols = {k: ([r["retrieval"][k] for r in rows], None) for k in RETRIEVAL_KEYS}
    return _block(cols, idx)


def _loc_columns(rows: Sequence[dict], method: str) -> dict[str, tuple]:
    items = [[it for it in r["localization"][method]] for r in rows]
    counts = [len(its) for its in items]
    cols = {
        k: ([sum(it[k] for it in its) for its in items], counts)
        for k in LOCALIZATION_KEYS
        if k != "supported_share"
    }
    cols["supported_share"] = (
        [sum(it["supported"] for it in its) for its in items],
        [sum(it["regions"] for it in its) for its in items],
    )
    return cols


def _localization(done: Sequence[dict], methods: Sequence[str], seed: int) -> dict:
    rows = [r for r in done if r.get("localization")]
    idx = bootstrap_indices(len(rows), N_BOOT, seed)
    values, cis, columns = {}, {}, {}
    for m in methods:
        columns[m] = _loc_columns(rows, m)
        values[m], cis[m] = _block(columns[m], idx)
    baselines = [b for b in BASELINES if b in methods]
    versus = {
        m: {
            b: {
                k: {
                    "diff": _r(_diff(values[m][k], values[b][k])),
                    "ci95": _ci(difference_ci(columns[m][k], columns[b][k], indices=idx)),
                }
                for k in LOCALIZATION_KEYS
            }
            for b in baselines
        }
        for m in methods
        if m not in BASELINES
    }
    return {
        "localization": values,
        "localization_ci": cis,
        "localization_vs_baselines": versus,
        "localization_n": {
            "queries": len(rows),
            "images": sum(len(r["localization"][methods[0]]) for r in rows) if methods else 0,
        },
    }


def _sanity(done: Sequence[dict], methods: Sequence[str], seed: int) -> dict:
    """Means of the randomization test's correlations over the (query, image) pairs that
    have one, with intervals resampling queries as `_localization` does."""
    rows = [r for r in done if r.get("localization")]
    idx = bootstrap_indices(len(rows), N_BOOT, seed)
    values, cis, counts = {}, {}, {}
    for m in (m for m in methods if m not in BASELINES):
        found = {
            k: [[it[k] for it in r["localization"][m] if it.get(k) is not None] for r in rows]
            for k in SANITY_KEYS
        }
        cols = {k: ([sum(v) for v in per], [len(v) for v in per]) for k, per in found.items()}
        values[m], cis[m] = _block(cols, idx)
        counts[m] = {k: int(sum(c)) for k, (_, c) in cols.items()}
    return {"sanity": values, "sanity_ci": cis, "sanity_n": counts}


def _text_regions(done: Sequence[dict], seed: int) -> tuple[dict, dict]:
    """Pointing game and IoU of the top text region, over the queries naming a part made of
    words, overall and by part (a query naming two parts counts for each)."""
    return _named_regions(done, "text_localization", "parts", ("pointing_game", "iou"), seed)


def _named_regions(
    done: Sequence[dict], record: str, named: str, keys: Sequence[str], seed: int
) -> tuple[dict, dict]:
    """`keys` of the top region over the queries with a `record`, overall and by what they
    name (`named`: parts, colours; a query naming two counts for each)."""
    rows = [r[record] for r in done if r.get(record)]
    values, cis = {}, {}
    parts = sorted({p for r in rows for p in r[named]})
    for name in ["all", *parts] if rows else []:
        these = [r for r in rows if name == "all" or name in r[named]]
        idx = bootstrap_indices(len(these), N_BOOT, seed)
        cols = {
            k: ([sum(it[k] for it in r["images"]) for r in these],
                [len(r["images"]) for r in these])
            for k in keys
        }  # fmt: skip
        values[name], cis[name] = _block(cols, idx)
        values[name]["queries"] = len(these)
        values[name]["images"] = sum(len(r["images"]) for r in these)
    return values, cis


def _cited_first(done: Sequence[dict], default: str, methods: Sequence[str], seed: int) -> dict:
    """The pointing game of what the product cites first: for a query naming a title, an
    axis label or a legend, the region of that part when one was read
    (`text_regions.named_first` puts it first), else for a query naming a colour that
    colour's region when there is one (`colour_regions.colour_first`), else the default
    method's hottest point; beside each baseline, paired."""
    rows = [r for r in done if r.get("localization") and default in r["localization"]]
    if not rows:
        return {}
    hits, counts, from_text, from_colour = [], [], 0, 0
    for r in rows:
        named = r.get("text_localization") or {}
        leads = set(named.get("parts", ())) & set(LEADS)
        text = {it["image"]: it for it in named.get("images", [])} if leads else {}
        colour = {it["image"]: it for it in (r.get("colour_localization") or {}).get("images", [])}
        total = 0.0
        for it in r["localization"][default]:
            found, drawn = text.get(it["image"]), colour.get(it["image"])
            if found and found["regions"]:
                total += found["pointing_game"]
                from_text += 1
            elif drawn and drawn["regions"]:
                total += drawn["pointing_game"]
                from_colour += 1
            else:
                total += it["pointing_game"]
        hits.append(total)
        counts.append(len(r["localization"][default]))
    idx = bootstrap_indices(len(rows), N_BOOT, seed)
    values, cis = _block({"pointing_game": (hits, counts)}, idx)
    out = {"pointing_game": values["pointing_game"], "ci95": cis["pointing_game"]}
    for b in (b for b in BASELINES if b in methods):
        theirs = ([sum(it["pointing_game"] for it in r["localization"][b]) for r in rows], counts)
        out[f"vs_{b}"] = {
            "diff": _r(_diff(values["pointing_game"], _block({"p": theirs}, idx)[0]["p"])),
            "ci95": _ci(difference_ci((hits, counts), theirs, indices=idx)),
        }
    return out | {"images": int(sum(counts)), "from_text": from_text, "from_colour": from_colour}


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def best_baseline(report: dict, key: str) -> str | None:
    """The baseline with the best value of `key` (the one a method must beat)."""
    loc = report["localization"]
    found = [(v, b) for b in BASELINES if (v := loc.get(b, {}).get(key)) is not None]
    if not found:
        return None
    pick = min if key in LOWER_IS_BETTER else max
    return pick(found)[1]


def _explained(done: Sequence[dict], seed: int) -> tuple[dict, dict]:
    rows = [r for r in done if "explained" in r]
    idx = bootstrap_indices(len(rows), N_BOOT, seed)
    regions = [r["explained"]["regions"] for r in rows]
    supported = [r["explained"]["supported"] for r in rows]
    values, cis = _block({"supported_share": (supported, regions)}, idx)
    values["regions_per_query"] = _r(np.mean(regions)) if rows else None
    return values, cis


def _ask(done: Sequence[dict], seed: int) -> tuple[dict, dict]:
    """Validity: valid / cited ids; support: supported / cited; coverage: share of answers
    citing at least one supported region; relevance: valid citations of relevant images."""
    a = [r["ask"] for r in done]
    idx = bootstrap_indices(len(a), N_BOOT, seed)
    cited = [x["cited"] for x in a]
    cols = {
        "citation_validity": ([x["valid"] for x in a], cited),
        "citation_support": ([x["supported"] for x in a], cited),
        "citation_coverage": ([float(x["supported"] > 0) for x in a], None),
        "citation_relevance": ([x["relevant_cited"] for x in a], [x["valid"] for x in a]),
        "removed_share": ([x["removed"] for x in a], [x["sentences"] + x["removed"] for x in a]),
        # answers in which the deterministic policy took the turn over from the LLM
        "takeover_rate": ([float(bool(x.get("takeover"))) for x in a], None),
    }
    return _block(cols, idx)


def _latency(done: Sequence[dict]) -> dict:
    out: dict = {}
    for stage in ("search", "ask", "explain", "localize"):
        ms = [r["latency_ms"][stage] for r in done if stage in r["latency_ms"]]
        if ms:
            p50, p95 = percentiles(ms)
            out[stage] = {"p50": _r(p50), "p95": _r(p95), "mean": _r(float(np.mean(ms)))}
    main = out.get("search") or out.get("ask") or {"p50": None, "p95": None}
    return {"p50": main["p50"], "p95": main["p95"], **out}
