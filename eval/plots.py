"""The report's PNG plots, drawn on matplotlib `Figure` objects (Agg; pyplot's global
state is never touched): retrieval by level, localization by method, latency."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from evident.eval.baselines import BASELINES

RETRIEVAL_PLOT = ("recall@5", "precision@5", "mrr", "ndcg@10")
LOCALIZATION_PLOT = (
    "pointing_game", "pointing_game_15px", "energy_pointing_game", "iou", "supported_share",
)  # fmt: skip


def _bars(ax, groups: list[str], series: dict[str, tuple[list, list]], *, hatch_groups=()):
    """Grouped bars with 95% whiskers; `series` maps a label to (values, intervals)."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, (values, cis)) in enumerate(series.items()):
        v = np.array([np.nan if a is None else a for a in values], dtype=float)
        lo = [0 if c is None or a is None else a - c[0] for a, c in zip(values, cis, strict=True)]
        hi = [0 if c is None or a is None else c[1] - a for a, c in zip(values, cis, strict=True)]
        bars = ax.bar(x + i * width, v, width, yerr=[lo, hi], capsize=2, label=label)
        for bar, g in zip(bars, groups, strict=True):
            if g in hatch_groups:
                bar.set_hatch("//")
    ax.set_xticks(x + width * (len(series) - 1) / 2, groups, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _retrieval(data: dict, path: Path) -> Path:

    levels = ["all", *data["retrieval_by_level"]]
    values = {"all": data["retrieval"], **data["retrieval_by_level"]}
    cis = {"all": data["retrieval_ci"], **data["retrieval_by_level_ci"]}
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    series = {
        k: ([values[lv][k] for lv in levels], [cis[lv][k] for lv in levels]) for k in RETRIEVAL_PLOT
    }
    _bars(ax, levels, series)
    ax.set_title("Retrieval by query level (95% bootstrap intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _localization(data: dict, path: Path) -> Path:

    methods = list(data["localization"])
    loc, cis = data["localization"], data["localization_ci"]
    fig = Figure(figsize=(8, 3.5))
    ax = fig.add_subplot()
    series = {
        k: ([loc[m][k] for m in methods], [cis[m][k] for m in methods]) for k in LOCALIZATION_PLOT
    }
    _bars(ax, methods, series, hatch_groups=BASELINES)
    ax.set_title("Localization by heatmap method (hatched: baselines)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _latency(records: Mapping[str, dict], path: Path) -> Path:

    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    for stage in ("search", "ask", "explain", "localize"):
        ms = [r["latency_ms"][stage] for r in records.values() if stage in r["latency_ms"]]
        if ms:
            ax.hist(ms, bins=30, alpha=0.6, label=stage)
    ax.set_xlabel("milliseconds per query")
    ax.legend(fontsize=7)
    ax.set_title("Latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_plots(data: dict, records: Mapping[str, dict], out_dir: Path) -> list[Path]:
    out = [_retrieval(data, out_dir / "retrieval.png")]
    if data["localization_n"]["queries"]:
        out.append(_localization(data, out_dir / "localization.png"))
    out.append(_latency(records, out_dir / "latency.png"))
    return out
