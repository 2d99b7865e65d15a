"""Drawers for the x-y chart kinds (line, scatter, error bars, histogram), the two-panel
figure, and the registry of every kind.

Each drawer takes an empty Axes, a seeded Generator and a Style, draws one chart and
returns a `Drawn` describing it. Drawers draw only from the Generator they are given, so
a figure is a pure function of its seed.
"""

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evident.eval.figures.categorical import (
    draw_bar,
    draw_box,
    draw_grouped_bar,
    draw_heatmap,
    draw_pie,
)
from evident.eval.figures.parts import (
    Drawn,
    Part,
    add_legend,
    curve,
    finish,
    maybe_annotate,
    style_axes,
)
from evident.eval.figures.style import (
    KIND_PHRASES,
    LEGEND_POSITIONS,
    LINESTYLES,
    MARKERS,
    PALETTE,
    SERIES_NAMES,
    VARIABLES,
    Style,
    a,
    axis_label,
    join_words,
    pick,
)


def _labels(ax: Axes, style: Style, x_var: tuple[str, str], y_var: tuple[str, str]) -> None:
    ax.set_xlabel(axis_label(x_var), **style.text())
    ax.set_ylabel(axis_label(y_var), **style.text())


def _line_phrase(name: str, s: dict) -> str:
    """E.g. "control as a blue dashed line with circle markers"."""
    marker = f" with {s['marker']} markers" if s["marker"] else ""
    return f"{name} as {a(s['color'])} {s['linestyle']} line{marker}"


def draw_line(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    x_var, y_var = pick(rng, VARIABLES, 2)
    n = int(rng.integers(1, 5))
    x = np.linspace(rng.uniform(1, 5), rng.uniform(20, 120), int(rng.integers(8, 21)))
    log_x, log_y = rng.random() < 0.1, rng.random() < 0.2
    scale = 10 ** rng.uniform(-1, 3)
    series, parts = [], []
    for color, name in zip(pick(rng, PALETTE, n), pick(rng, SERIES_NAMES, n), strict=True):
        s = {"label": name, "color": color, "linestyle": pick(rng, LINESTYLES)}
        s["marker"] = pick(rng, MARKERS) if rng.random() < 0.4 else None
        y = curve(rng, x, log_y, scale)
        (line,) = ax.plot(
            x,
            y,
            color=PALETTE[color],
            linestyle=LINESTYLES[s["linestyle"]],
            linewidth=style.pt(style.line_px),
            marker=MARKERS[s["marker"]] if s["marker"] else "None",
            markersize=style.pt(style.marker_px),
            label=name,
        )
        series.append(s)
        parts.append(Part("series", name, (line,), color))
    ax.set_xscale("log" if log_x else "linear")
    ax.set_yscale("log" if log_y else "linear")
    _labels(ax, style, x_var, y_var)
    attributes = {"series": series, "n_series": n, "colors": [s["color"] for s in series]}
    extras = maybe_annotate(ax, rng, style, x, y, attributes, parts, chance=0.25)
    return finish(
        ax,
        rng,
        style,
        what="a line chart",
        body=f"of {y_var[0]} against {x_var[0]}: "
        + join_words([_line_phrase(s["label"], s) for s in series]),
        short=f"a line chart of {y_var[0]} with {join_words(attributes['colors'])} lines",
        topic=y_var[0],
        attributes=attributes,
        parts=parts,
        legend=add_legend(ax, rng, style) if n > 1 or rng.random() < 0.3 else None,
        extras=extras,
    )


def draw_scatter(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    x_var, y_var = pick(rng, VARIABLES, 2)
    n, log = int(rng.integers(1, 4)), bool(rng.random() < 0.15)
    colors, slope = pick(rng, PALETTE, n + 1), rng.uniform(-2, 2)
    series, parts, xs, ys = [], [], [], []
    for color, name, marker in zip(
        colors[:n], pick(rng, SERIES_NAMES, n), pick(rng, MARKERS, n), strict=False
    ):
        x = rng.uniform(0, 10, int(rng.integers(12, 40)))
        y = slope * x + rng.uniform(-3, 3) + rng.normal(0, rng.uniform(0.5, 3), x.size)
        x, y = (10 ** (x / 4), 10 ** (y / 8)) if log else (x, y)
        hollow = marker not in ("cross", "plus") and rng.random() < 0.25
        (points,) = ax.plot(
            x,
            y,
            linestyle="None",
            marker=MARKERS[marker],
            color=PALETTE[color],
            markersize=style.pt(style.marker_px),
            markerfacecolor="none" if hollow else PALETTE[color],
            label=name,
        )
        xs.append(x)
        ys.append(y)
        series.append({"label": name, "color": color, "marker": marker, "hollow": hollow})
        parts.append(Part("series", name, (points,), color))
    phrases = [
        f"{s['label']} as {s['color']} {'hollow ' * s['hollow']}{s['marker']} markers"
        for s in series
    ]
    attributes = {"series": series, "n_series": n, "colors": colors[:n], "regression": None}
    if rng.random() < 0.5:
        x, y = np.concatenate(xs), np.concatenate(ys)
        fx, fy = (np.log10(x), np.log10(y)) if log else (x, y)
        line_x = np.linspace(fx.min(), fx.max(), 50)
        line_y = np.polyval(np.polyfit(fx, fy, 1), line_x)
        line_x, line_y = (10**line_x, 10**line_y) if log else (line_x, line_y)
        color, linestyle = colors[n], pick(rng, ("solid", "dashed"))
        (line,) = ax.plot(
            line_x,
            line_y,
            color=PALETTE[color],
            linestyle=LINESTYLES[linestyle],
            linewidth=style.pt(style.line_px),
            label="linear fit",
        )
        attributes["regression"] = {"color": color, "linestyle": linestyle}
        parts.append(Part("series", "regression line", (line,), color))
        phrases.append(f"{a(color)} {linestyle} regression line")
    ax.set_xscale("log" if log else "linear")
    ax.set_yscale("log" if log else "linear")
    _labels(ax, style, x_var, y_var)
    extras = maybe_annotate(ax, rng, style, xs[0], ys[0], attributes, parts, chance=0.2)
    return finish(
        ax,
        rng,
        style,
        what="a scatter plot",
        body=f"of {y_var[0]} against {x_var[0]} with " + join_words(phrases),
        short=f"a scatter plot of {y_var[0]} against {x_var[0]}",
        topic=y_var[0],
        attributes=attributes,
        parts=parts,
        legend=add_legend(ax, rng, style) if n > 1 or rng.random() < 0.3 else None,
        extras=extras,
    )


def draw_errorbar(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    x_var, y_var = pick(rng, VARIABLES, 2)
    n, log_y = int(rng.integers(1, 4)), bool(rng.random() < 0.15)
    x = np.arange(1, int(rng.integers(5, 11)) + 1) * 10 ** rng.uniform(0, 2)
    scale = 10 ** rng.uniform(-1, 3)
    series, parts = [], []
    for i, (color, name) in enumerate(
        zip(pick(rng, PALETTE, n), pick(rng, SERIES_NAMES, n), strict=True)
    ):
        s = {"label": name, "color": color, "marker": pick(rng, MARKERS)}
        s["linestyle"] = pick(rng, ("solid", "dashed")) if rng.random() < 0.6 else None
        y = curve(rng, x, log_y, scale)
        err = y * rng.uniform(0.1, 0.4) if log_y else np.ptp(y) * rng.uniform(0.05, 0.2)
        container = ax.errorbar(
            x + (i - (n - 1) / 2) * 0.08 * (x[1] - x[0]),
            y,
            yerr=err,
            color=PALETTE[color],
            marker=MARKERS[s["marker"]],
            markersize=style.pt(style.marker_px),
            linestyle=LINESTYLES[s["linestyle"]] if s["linestyle"] else "None",
            linewidth=style.pt(style.line_px),
            elinewidth=style.pt(1.2),
            capsize=style.pt(float(rng.uniform(2, 6))),
            label=name,
        )
        data_line, caps, bars = container.lines
        series.append(s)
        parts.append(Part("series", name, (data_line, *caps, *bars), color))
    ax.set_yscale("log" if log_y else "linear")
    _labels(ax, style, x_var, y_var)
    attributes = {"series": series, "n_series": n, "colors": [s["color"] for s in series]}
    extras = maybe_annotate(ax, rng, style, *data_line.get_data(), attributes, parts, chance=0.2)
    phrases = [
        f"{s['label']} as {s['color']} {s['marker']} markers"
        + (f" joined by a {s['linestyle']} line" if s["linestyle"] else "")
        for s in series
    ]
    return finish(
        ax,
        rng,
        style,
        what="an error-bar plot",
        body=f"of {y_var[0]} against {x_var[0]} with " + join_words(phrases),
        short=f"{join_words([s['color'] for s in series])} points with error bars",
        topic=y_var[0],
        attributes=attributes,
        parts=parts,
        legend=add_legend(ax, rng, style) if n > 1 or rng.random() < 0.3 else None,
        extras=extras,
    )


def draw_histogram(ax: Axes, rng: np.random.Generator, style: Style) -> Drawn:
    style_axes(ax, rng, style)
    variable = pick(rng, VARIABLES)
    n, histtype = int(rng.integers(1, 4)), pick(rng, ("bar", "stepfilled", "step"))
    density, log_y = bool(rng.random() < 0.3), bool(rng.random() < 0.15)
    size = int(rng.integers(200, 800))
    data = [rng.normal(rng.uniform(0, 10), rng.uniform(1, 3), size) for _ in range(n)]
    edges = np.histogram_bin_edges(np.concatenate(data), bins=int(rng.integers(10, 40)))
    series, parts = [], []
    for d, color, name in zip(data, pick(rng, PALETTE, n), pick(rng, SERIES_NAMES, n), strict=True):
        _, _, patches = ax.hist(
            d,
            bins=edges,
            histtype=histtype,
            density=density,
            color=PALETTE[color],
            alpha=0.6 if n > 1 and histtype != "step" else 1.0,
            linewidth=style.pt(style.line_px) if histtype == "step" else 0,
            label=name,
        )
        series.append({"label": name, "color": color})
        parts.append(Part("series", name, tuple(patches), color))
    ax.set_yscale("log" if log_y else "linear")
    _labels(ax, style, variable, ("density" if density else "count", ""))
    kind = {"bar": "", "stepfilled": "filled step ", "step": "step "}[histtype]
    body = f"of {variable[0]} showing " + join_words(
        [f"{s['label']} in {s['color']}" for s in series]
    )
    return finish(
        ax,
        rng,
        style,
        what=f"a {kind}histogram",
        body=body,
        short=f"a histogram of {variable[0]}",
        topic=variable[0],
        attributes={
            "series": series,
            "n_series": n,
            "colors": [s["color"] for s in series],
            "histtype": histtype,
            "density": density,
        },
        parts=parts,
        legend=add_legend(ax, rng, style) if n > 1 or rng.random() < 0.3 else None,
    )


AXES_KINDS: dict[str, Callable[[Axes, np.random.Generator, Style], Drawn]] = {
    "line": draw_line,
    "scatter": draw_scatter,
    "bar": draw_bar,
    "grouped_bar": draw_grouped_bar,
    "histogram": draw_histogram,
    "box": draw_box,
    "pie": draw_pie,
    "heatmap": draw_heatmap,
    "errorbar": draw_errorbar,
}
PANEL_KINDS = ("line", "scatter", "bar", "histogram", "errorbar")


def draw_multi_panel(fig: Figure, rng: np.random.Generator, style: Style) -> Drawn:
    """Two simple charts side by side (wide figures) or stacked (tall ones), titled (a), (b)."""
    side = style.width >= style.height
    axes = fig.subplots(1, 2) if side else fig.subplots(2, 1)
    inner = replace(style, title=None, legend=pick(rng, LEGEND_POSITIONS[:6]))
    inner = replace(inner, font_px=style.font_px * 0.9, marker_px=style.marker_px * 0.8)
    parts, panels, clauses = [], [], []
    for ax, position, letter in zip(
        axes, ("left", "right") if side else ("top", "bottom"), "ab", strict=True
    ):
        kind = pick(rng, PANEL_KINDS)
        drawn = AXES_KINDS[kind](ax, rng, inner)
        ax.set_title(f"({letter})", loc="left", **inner.text())
        parts += [Part("panel", f"{position} panel", (ax,)), *drawn.parts]
        panels.append({"position": position, "kind": kind, "attributes": drawn.attributes})
        clauses.append(f"on the {position}, {drawn.clause()}")
    topic = panels[0]["attributes"]["topic"]
    title = style.title.format(topic) if style.title else None
    if title:
        parts.append(Part("title", title, (fig.suptitle(title, **style.text(1.1)),)))
    layout = "side by side" if side else "stacked vertically"
    return Drawn(
        what="a two-panel figure",
        body=f"with panels {layout}: " + "; ".join(clauses),
        extras=(),
        short=f"two panels {layout}: "
        + " and ".join(KIND_PHRASES[panel["kind"]] for panel in panels),
        attributes={
            "title": title,
            "topic": topic,
            "layout": layout,
            "panels": panels,
            "legend": None,
            "has_grid": style.grid,
            "font": style.font,
            # Kind-agnostic queries ("a chart with an arrow annotation") must see a panel's.
            "annotation": next(
                (p["attributes"]["annotation"] for p in panels if p["attributes"]["annotation"]),
                None,
            ),
        },
        parts=tuple(parts),
    )


def _single(draw: Callable[[Axes, np.random.Generator, Style], Drawn]):
    """Adapt an axes drawer to the figure-level signature of `KINDS`."""
    return lambda fig, rng, style: draw(fig.add_subplot(), rng, style)


KINDS: dict[str, Callable[[Figure, np.random.Generator, Style], Drawn]] = {
    **{name: _single(draw) for name, draw in AXES_KINDS.items()},
    "multi_panel": draw_multi_panel,
}
