"""Drawers for the chart kinds over named categories: bar, grouped bar, box, pie, heatmap.

Same contract as `evident.eval.figures.kinds`: an empty Axes, a seeded Generator and a Style in,
a `Drawn` out, with every random choice taken from that Generator.
"""

import matplotlib
import numpy as np
from matplotlib.axes import Axes

from evident.eval.figures.parts import Drawn, Part, add_legend, finish, style_axes
from evident.eval.figures.style import (
    CATEGORY_SETS,
    COLORMAPS,
    FONTS,
    PALETTE,
    SERIES_NAMES,
    VARIABLES,
    Style,
    axis_label,
    join_words,
    pick,
)

HATCHES = {"diagonal": "//", "dotted": "..", "crossed": "xx"}


def _categories(rng: np.random.Generator, low: int = 3, high: int = 8) -> tuple[str, list[str]]:
    """A category set's name and its first k members, 3 <= k <= min(high, set size)."""
    name = pick(rng, CATEGORY_SETS)
    values = CATEGORY_SETS[name]
    return name, list(values[: int(rng.integers(low, min(high, len(values)) + 1))])


def draw_bar(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    group, cats = _categories(rng)
    variable, color, name = pick(rng, VARIABLES), pick(rng, PALETTE), pick(rng, SERIES_NAMES)
    horizontal, log = bool(rng.random() < 0.3), bool(rng.random() < 0.1)
    spread = rng.uniform(0, 3.5, len(cats)) if log else np.log10(rng.uniform(0.2, 1, len(cats)))
    values = 10 ** (spread + (0 if log else rng.uniform(0, 3)))
    hatch = pick(rng, HATCHES) if rng.random() < 0.15 else None
    outlined, labelled = bool(rng.random() < 0.3), bool(rng.random() < 0.3)
    style_kw = {
        "color": PALETTE[color],
        "edgecolor": "black" if outlined else "white",  # a hatch is drawn in the edge colour
        "linewidth": style.pt(1.0) if outlined else 0,
        "hatch": HATCHES[hatch] if hatch else None,
        "label": name,
    }
    thickness = float(rng.uniform(0.5, 0.9))
    if horizontal:
        bars = ax.barh(cats, values, height=thickness, **style_kw)
        ax.set_xscale("log" if log else "linear")
        ax.set_xlabel(axis_label(variable), **style.text())
        ax.set_ylabel(group, **style.text())
    else:
        bars = ax.bar(cats, values, width=thickness, **style_kw)
        ax.set_yscale("log" if log else "linear")
        ax.set_xlabel(group, **style.text())
        ax.set_ylabel(axis_label(variable), **style.text())
    if labelled:
        ax.bar_label(bars, fmt="%.3g", padding=2, **style.text(0.75))
    looks = [f"{color} bars"]
    looks += ["outlined in black"] * outlined + [f"{hatch} hatching"] * bool(hatch)
    looks += ["value labels"] * labelled
    return finish(
        ax,
        rng,
        style,
        what="a horizontal bar chart" if horizontal else "a bar chart",
        body=f"of {variable[0]} by {group} ({join_words(cats)}) with " + join_words(looks),
        short=f"a bar chart of {variable[0]} by {group} with {color} bars",
        topic=variable[0],
        attributes={
            "orientation": "horizontal" if horizontal else "vertical",
            "categories": cats,
            "series": [{"label": name, "color": color}],
            "n_series": 1,
            "colors": [color],
            "hatch": hatch,
            "outlined": outlined,
            "value_labels": labelled,
        },
        parts=[Part("bar", cat, (bar,), color) for cat, bar in zip(cats, bars, strict=True)],
        legend=add_legend(ax, rng, style) if rng.random() < 0.4 else None,
    )


def draw_grouped_bar(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    group, cats = _categories(rng, high=6)
    variable, n = pick(rng, VARIABLES), int(rng.integers(2, 5))
    width, scale = float(rng.uniform(0.6, 0.85)) / n, 10 ** rng.uniform(0, 3)
    positions = np.arange(len(cats))
    series, parts = [], []
    for j, (color, name) in enumerate(
        zip(pick(rng, PALETTE, n), pick(rng, SERIES_NAMES, n), strict=True)
    ):
        bars = ax.bar(
            positions + (j - (n - 1) / 2) * width,
            rng.uniform(0.2, 1, len(cats)) * scale,
            width,
            color=PALETTE[color],
            linewidth=0,
            label=name,
        )
        series.append({"label": name, "color": color})
        parts.append(Part("series", name, tuple(bars), color))
        for cat, bar in zip(cats, bars, strict=True):
            parts.append(Part("bar", f"{name}, {cat}", (bar,), color))
    ax.set_xticks(positions, cats)
    ax.set_xlabel(group, **style.text())
    ax.set_ylabel(axis_label(variable), **style.text())
    return finish(
        ax,
        rng,
        style,
        what="a grouped bar chart",
        body=f"of {variable[0]} by {group} ({join_words(cats)}) comparing "
        + join_words([f"{s['label']} in {s['color']}" for s in series]),
        short=f"grouped {join_words([s['color'] for s in series])} bars of {variable[0]}",
        topic=variable[0],
        attributes={
            "categories": cats,
            "series": series,
            "n_series": n,
            "colors": [s["color"] for s in series],
        },
        parts=parts,
        legend=add_legend(ax, rng, style) if rng.random() < 0.9 else None,
    )


def draw_box(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    group, cats = _categories(rng, high=6)
    variable, color = pick(rng, VARIABLES), pick(rng, PALETTE)
    median = pick(rng, [c for c in ("black", "red", "orange", "blue") if c != color])
    horizontal, notch, filled = (bool(rng.random() < p) for p in (0.3, 0.3, 0.6))
    data = [
        rng.normal(rng.uniform(0, 10), rng.uniform(0.5, 2.5), int(rng.integers(30, 120)))
        for _ in cats
    ]
    edge = "black" if filled else PALETTE[color]
    boxes = ax.boxplot(
        data,
        tick_labels=cats,
        orientation="horizontal" if horizontal else "vertical",
        notch=notch,
        patch_artist=filled,
        widths=float(rng.uniform(0.4, 0.7)),
        boxprops={"facecolor": PALETTE[color], "edgecolor": edge} if filled else {"color": edge},
        whiskerprops={"color": edge, "linewidth": style.pt(1.0)},
        capprops={"color": edge, "linewidth": style.pt(1.0)},
        medianprops={"color": PALETTE[median], "linewidth": style.pt(1.8)},
        flierprops={"marker": "o", "markersize": style.pt(4), "markeredgecolor": edge},
    )
    parts = [
        Part(
            "series",
            cat,
            (
                boxes["boxes"][i],
                boxes["medians"][i],
                *boxes["whiskers"][2 * i : 2 * i + 2],
                *boxes["caps"][2 * i : 2 * i + 2],
                boxes["fliers"][i],
            ),
            color,
        )
        for i, cat in enumerate(cats)
    ]
    value_axis, group_axis = (
        (ax.set_xlabel, ax.set_ylabel) if horizontal else (ax.set_ylabel, ax.set_xlabel)
    )
    value_axis(axis_label(variable), **style.text())
    group_axis(group, **style.text())
    look = f"{'filled ' * filled}{color} {'notched ' * notch}boxes and {median} median lines"
    return finish(
        ax,
        rng,
        style,
        what="a horizontal box plot" if horizontal else "a box plot",
        body=f"of {variable[0]} by {group} ({join_words(cats)}) with {look}",
        short=f"a box plot of {variable[0]} by {group}",
        topic=variable[0],
        attributes={
            "orientation": "horizontal" if horizontal else "vertical",
            "categories": cats,
            "series": [{"label": cat, "color": color} for cat in cats],
            "n_series": len(cats),
            "colors": [color],
            "notch": notch,
            "filled": filled,
            "median_color": median,
        },
        parts=parts,
    )


def draw_pie(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    group, cats = _categories(rng, high=6)
    colors = pick(rng, PALETTE, len(cats))
    exploded = int(rng.integers(len(cats))) if rng.random() < 0.3 else None
    percent, use_legend, donut = (bool(rng.random() < p) for p in (0.5, 0.4, 0.2))
    wedges, *_ = ax.pie(
        rng.dirichlet(np.full(len(cats), 2.0)) * 100,
        labels=None if use_legend else cats,
        colors=[PALETTE[c] for c in colors],
        explode=[0.1 if i == exploded else 0.0 for i in range(len(cats))],
        autopct="%1.0f%%" if percent else None,
        pctdistance=0.78 if donut else 0.6,
        startangle=pick(rng, (0, 90, 140)),
        counterclock=bool(rng.random() < 0.5),
        textprops=style.text(0.85),
        wedgeprops={"linewidth": style.pt(1.0), "edgecolor": "white"}
        | ({"width": 0.45} if donut else {}),
    )
    slices = [f"{cat} in {color}" for cat, color in zip(cats, colors, strict=True)]
    extras = [f"the {cats[exploded]} slice pulled out"] if exploded is not None else []
    extras += ["percentage labels"] * percent
    return finish(
        ax,
        rng,
        style,
        what="a donut-style pie chart" if donut else "a pie chart",
        body=f"of {group} shares with {len(cats)} slices: {join_words(slices)}",
        short=f"a pie chart with {len(cats)} slices",
        topic=f"{group} share",
        attributes={
            "categories": cats,
            "series": [{"label": c, "color": k} for c, k in zip(cats, colors, strict=True)],
            "n_series": len(cats),
            "colors": colors,
            "n_slices": len(cats),
            "donut": donut,
            "exploded": cats[exploded] if exploded is not None else None,
            "percent_labels": percent,
        },
        parts=[Part("wedge", c, (w,), k) for c, w, k in zip(cats, wedges, colors, strict=True)],
        legend=add_legend(ax, rng, style, wedges, cats) if use_legend else None,
        extras=tuple(extras),
        grid=False,
    )


def draw_heatmap(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    row_set, col_set = pick(rng, CATEGORY_SETS, 2)
    rows = list(CATEGORY_SETS[row_set][: int(rng.integers(4, 9))])
    cols = list(CATEGORY_SETS[col_set][: int(rng.integers(4, 9))])
    variable, cmap = pick(rng, VARIABLES), pick(rng, COLORMAPS)
    data = np.outer(rng.uniform(0, 1, len(rows)), rng.uniform(0, 1, len(cols)))
    data = (data + rng.normal(0, 0.15, data.shape)) * 10 ** rng.uniform(0, 2)
    image = ax.imshow(data, cmap=COLORMAPS[cmap], aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(col_set, **style.text())
    ax.set_ylabel(row_set, **style.text())
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.08, pad=0.03)
    colorbar.set_label(axis_label(variable), **style.text(0.9))
    colorbar.ax.tick_params(
        labelsize=style.pt(style.font_px * 0.8), labelfontfamily=FONTS[style.font]
    )
    show_values = data.size <= 48 and rng.random() < 0.4
    if show_values:
        shade = matplotlib.colormaps[COLORMAPS[cmap]](image.norm(data))[..., :3]
        light = shade @ np.array([0.299, 0.587, 0.114]) > 0.5
        for (i, j), value in np.ndenumerate(data):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", **style.text(0.7),
                    color="black" if light[i, j] else "white")  # fmt: skip
    extras = ["values written in the cells"] if show_values else []
    return finish(
        ax,
        rng,
        style,
        what="a heatmap",
        body=f"of {variable[0]} by {row_set} ({len(rows)} rows) and {col_set} "
        f"({len(cols)} columns) in the {cmap} colour map with a colorbar labelled "
        f'"{axis_label(variable)}"',
        short=f"a {cmap} heatmap of {variable[0]}",
        topic=variable[0],
        attributes={
            "rows": rows,
            "columns": cols,
            "colormap": cmap,
            "values_shown": show_values,
            "n_series": 1,
            "colors": [],
        },
        parts=[Part("colorbar", axis_label(variable), (colorbar.ax,))],
        extras=tuple(extras),
        grid=False,
    )
