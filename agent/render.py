"""Terminal output: every table, summary and answer the CLI and the REPL print.

Library code returns records; this module turns them into rich renderables or JSON on
stdout. File names, captions and answers are data: they are printed as `Text`, never
parsed as rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from tqdm.auto import tqdm

from evident.tools.counts import counted_by
from evident.tools.places import read_from

CITATION = r"\[R\d+\.\d+(?:,\s*R\d+\.\d+)*\]"


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def plain(console: Console, text: str) -> None:
    """One line of data (a path, a caption) printed as it is."""
    console.print(Text(text), soft_wrap=True)


@contextmanager
def progress(enabled: bool, desc: str, unit: str = "img") -> Iterator[tuple[Callable, Callable]]:
    """`(advance, set_total)` callbacks that drive a tqdm bar on an interactive stderr,
    and do nothing otherwise (a pipe, `--json`)."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda n=1: None), (lambda n: None)
        return

    bar = tqdm(desc=desc, unit=unit, file=sys.stderr)

    def set_total(n: int) -> None:
        bar.total = n
        bar.refresh()

    try:
        yield bar.update, set_total
    finally:
        bar.close()


def index_summary(console: Console, report, collection: str) -> None:
    r = report
    line = Text.assemble(
        (collection, "bold"),
        f": {r.indexed} indexed, {r.unchanged} unchanged, "
        + (f"{r.refreshed} refreshed, " if r.refreshed else "")
        + f"{r.moved} moved, {r.pruned} pruned, {len(r.skipped)} skipped (model {r.model})",
    )
    console.print(line)
    for s in r.skipped:
        plain(console, f"  skipped {s.path}: {s.reason}")
    for w in r.warnings:
        console.print(Text.assemble(("  warning: ", "yellow"), w))


def ranked_table(title: str, results: list[dict], fusion: dict | None = None) -> Table:
    """`evident search`'s results, from the search JSON's `results` (printed as soon as
    they are ranked, before their evidence), with `fusion_note` under them."""
    note = fusion_note(fusion or {})
    table = Table(title=Text(title), caption=Text(note) if note else None)
    for col in ("#", "score", "image", "caption"):
        table.add_column(col)
    for r in results:
        table.add_row(str(r["rank"]), f"{r['score']:.3f}", Text(r["uri"]), Text(r["caption"] or ""))
    return table


def fusion_note(fusion: dict) -> str | None:
    """One line on the signals that counted less than their weight because the query is
    outside what they know (`tools.hybrid.confidence`), on a place the query names
    (`tools.places`), on a number of bars or boxes it asks for (`tools.counts`) and on
    the marks it names (`tools.marks`), or None.

    >>> fusion_note({"image": {"best": 0.21, "band": [0.48, 0.5], "confidence": 0.0}})
    "image signal not counted: its best match, 0.21, is below the model's 0.48-0.50"
    >>> fusion_note({"place": {"where": "in the upper left", "part": "a legend", "weight": 0.33}})
    "reordered by where 'a legend' lies: in the upper left"
    >>> fusion_note({"marks": {"weight": 0.2, "names": ["cyan circle", "dashed"]}})
    'weighed the marks read in each figure: cyan circle, dashed'
    """
    notes = []
    image = fusion.get("image", {})
    if image.get("confidence", 1.0) < 1.0:
        low, high = image["band"]
        how = "not counted" if image["confidence"] == 0 else f"counted {image['confidence']:.0%}"
        where = "below" if image["best"] < low else "inside"
        notes.append(
            f"image signal {how}: its best match, {image['best']:.2f}, is {where} the "
            f"model's {low:.2f}-{high:.2f}"
        )
    words = fusion.get("words", {}).get("embedding", {})
    if words.get("confidence", 1.0) < 1.0:
        notes.append("no image's words resemble the query (only exact words counted)")
    place = fusion.get("place")
    if place and place["weight"] > 0:
        notes.append(
            f"reordered by where {place['part']!r} lies: {place['where']}{read_from(place)}"
        )
    elif place:
        notes.append(f"{place['where']!r} not used: {place['why']}")
    count = fusion.get("count")
    if count and count["weight"] > 0:
        notes.append(f"reordered by {counted_by(count)}: {count['where']}")
    elif count:
        notes.append(f"{count['where']!r} not used: {count['why']}")
    if marks := fusion.get("marks"):
        named = ", ".join(marks["names"])
        notes.append(f"weighed the marks read in each figure: {named}")
    if shown := fusion.get("printed"):
        named = ", ".join(shown["names"])
        notes.append(f"weighed what the words read in each figure show: {named}")
    return "; ".join(notes) or None


def evidence_table(result: dict) -> Table | None:
    """The evidence for the explained results of `QueryResult.to_dict()`: each one's
    regions (`?` marks those the counterfactual check did not support) and its overlay
    PNG, or why it could not be explained; None when none was explained."""
    rows = [r for r in result["results"] if r["regions"] or r["heatmap"] or r.get("evidence_error")]
    if not rows:
        return None
    method = next((r["heatmap"]["method"] for r in rows if r["heatmap"]), None)
    table = Table(title=Text(f"evidence ({method})" if method else "evidence"))
    for col in ("#", "regions", "overlay"):
        table.add_column(col)
    for r in rows:
        regions = " ".join(g["id"] + ("" if g.get("supported") else "?") for g in r["regions"])
        where = (r["heatmap"] or {}).get("overlay") or r.get("evidence_error") or ""
        table.add_row(str(r["rank"]), Text(regions or "no region"), Text(where))
    return table


def collections_table(db: str, infos: list) -> Table:
    table = Table(title=Text(str(db)))
    for col in ("collection", "images", "captions", "with words", "model", "dim"):
        table.add_column(col)
    for i in infos:
        row = (str(i.count), str(i.captions), str(i.words))
        table.add_row(Text(i.name), *row, Text(i.model), str(i.dim))
    return table


def evidence_lines(result: dict) -> list[Text]:
    """`/why N`-style lines for one result: each region, its check, and what it reads."""
    out = []
    for g in result.get("regions", []):
        cf = g.get("counterfactual") or {}
        verdict = "supported" if g.get("supported") else "not supported"
        line = Text(f"  {g['id']} {g.get('kind', 'heat')} {g['box']} {verdict}")
        if cf:
            line.append(f", cosine drop {cf.get('score_drop', 0):.2g}")
        if g.get("text"):
            line.append(" reads ")
            line.append(f"“{g['text']}”", style="cyan")
        if cc := g.get("colour_check"):
            line.append(f", drawn in {g['colour']} (its share of the ink ")
            line.append(f"{cc['score_before']:.0%} -> {cc['score_after']:.0%} without it)")
        out.append(line)
    return out


def render_answer(console: Console, answer) -> None:
    """The results, the answer with citations highlighted, grounding and any note."""
    if answer.results:
        table = Table(box=None, pad_edge=False)
        for col in ("#", "score", "image", "evidence"):
            table.add_column(col)
        for r in answer.results:
            regions = " ".join(
                g["id"] + ("" if g.get("supported") else "?") for g in r.get("regions", [])
            )
            name = Text(Path(r["uri"]).name)  # a file name is data, never markup
            table.add_row(str(r["rank"]), f"{r['score']:.3f}", name, regions)
        console.print(table)
    words = [line for r in answer.results for line in evidence_lines(r) if "reads" in line.plain]
    for line in words:  # what the images read, where the answer may quote it
        console.print(line)
    text = Text(answer.answer)
    text.highlight_regex(CITATION, "bold cyan")
    console.print(text)
    g = answer.grounding
    console.print(
        f"[dim]grounding: {g.get('sentences', 0)} sentences, {g.get('cited', 0)} cited, "
        f"{g.get('supported', 0)} supported, {len(g.get('removed', []))} removed[/]"
    )


def bench_table(result: dict[str, Any]) -> Table:
    """Each figure, its unit, and its target when it has one."""
    table = Table(title=f"evident bench — {result['model']} on {result['machine']['device']}")
    for col in ("figure", "value", "unit", "target"):
        table.add_column(col)
    for name, fig in result["figures"].items():
        t = result["targets"].get(name)
        target = f"{t['op']} {t['value']:g} {'✓' if t['met'] else '✗'}" if t else ""
        table.add_row(name, f"{fig['value']:.4g}", fig["unit"], target)
    return table


def figures_summary(console: Console, report: dict, out_dir: str) -> None:
    plain(console, f"{report['n_figures']} figures in {out_dir} ({report['seconds']:.1f} s)")
    plain(console, f"  splits: {report['split_counts']}  queries: {report['query_counts']}")


def eval_summary(console: Console, report) -> None:
    data = report.data
    r = data["retrieval"]
    console.print(
        f"{data['n_queries']} queries ({report.evaluated} run now, {report.seconds:.0f} s): "
        f"R@1 {r['recall@1']:.3f}  R@5 {r['recall@5']:.3f}  P@5 {r['precision@5']:.3f} "
        f"(capped {r['capped_precision@5']:.3f})  MRR {r['mrr']:.3f}  nDCG@10 {r['ndcg@10']:.3f}"
    )
    for method, values in data["localization"].items():
        if values["pointing_game"] is not None:
            console.print(
                f"  {method:<12} pointing game {values['pointing_game']:.3f} "
                f"({values['pointing_game_15px']:.3f} within 15 px)"
            )
    text = (data.get("text_regions") or {}).get("all")
    if text and text["pointing_game"] is not None:
        console.print(f"  {'text regions':<12} pointing game {text['pointing_game']:.3f} "
                      f"({text['queries']} queries naming words)")  # fmt: skip
    plain(console, f"report: {report.files[1]}")


def train_summary(console: Console, report) -> None:
    r = report.recipe
    what = "already trained" if report.already_done else f"trained {r['steps']} steps"
    if report.resumed_from and not report.already_done:
        what += f" (resumed at step {report.resumed_from})"
    plain(
        console,
        f"{what} on {r['n_pairs']} pairs in {r['wall_seconds']:.0f} s on {r['device']}; "
        f"use --model {report.spec}",
    )
