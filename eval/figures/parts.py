"""What a chart drawer hands back, and the decorations every chart kind shares.

A drawer returns a `Drawn`: the caption pieces, the attribute dict that attribute
queries are computed from, and the named `Part`s (legend, bars, series...) whose pixel
boxes are measured once the figure has been drawn. Because the caption, the attributes
and the pixels all come from the same random choices, a caption never says something
the picture does not show.
"""

from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes

from evident.eval.figures.style import FONTS, PALETTE, Style, a, pick

ANNOTATION_TEXTS = ("peak", "onset", "outlier", "threshold", "minimum", "plateau", "transition")


@dataclass(frozen=True)
class Part:
    """A named piece of the figure; its box is the union of its artists' drawn extents."""

    name: str
    label: str
    artists: tuple
    color: str | None = None


@dataclass(frozen=True)
class Drawn:
    """A drawer's description of the chart it drew."""

    what: str  # "a line chart"
    body: str  # "of pressure (kPa) against time (s): control as a blue solid line"
    extras: tuple[str, ...]  # "legend in the upper left", "grid lines", ...
    short: str  # a terse paraphrase for contrastive pairs
    attributes: dict
    parts: tuple[Part, ...]

    def caption(self) -> str:
        """The full caption as a sentence, with the title quoted when there is one."""
        title = self.attributes.get("title")
        text = f'{self.what} titled "{title}" {self.body}' if title else f"{self.what} {self.body}"
        if self.extras:
            text += "; " + "; ".join(self.extras)
        return text[0].upper() + text[1:] + "."

    def clause(self) -> str:
        """The caption without title or full stop, to describe one panel of a larger figure."""
        return ", ".join([f"{self.what} {self.body}", *self.extras])


def style_axes(ax: Axes, rng: np.random.Generator, style: Style) -> None:
    """Tick fonts and directions, spines and background: variety nobody queries for."""
    ax.tick_params(
        labelsize=style.pt(style.font_px * 0.85),
        labelfontfamily=FONTS[style.font],
        direction=pick(rng, ("out", "in")),
    )
    ax.set_axisbelow(True)
    if rng.random() < 0.4:
        ax.spines[["top", "right"]].set_visible(False)
    if rng.random() < 0.15:
        ax.set_facecolor("#f2f2f2")


def add_legend(ax: Axes, rng: np.random.Generator, style: Style, handles=None, labels=None) -> Part:
    """A framed legend at the style's position ("outside right" sits beside the axes)."""
    if style.legend == "outside right":
        where = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)}
    else:
        where = {"loc": style.legend}
    args = () if handles is None else (handles, labels)
    legend = ax.legend(
        *args,
        prop={"family": FONTS[style.font], "size": style.pt(style.font_px * 0.85)},
        fancybox=bool(rng.random() < 0.5),
        framealpha=pick(rng, (1.0, 0.8)),
        edgecolor=pick(rng, ("0.75", "black")),
        **where,
    )
    legend.get_frame().set_linewidth(style.pt(1.0))
    return Part("legend", style.legend, (legend,))


def add_annotation(
    ax: Axes, rng: np.random.Generator, style: Style, x: np.ndarray, y: np.ndarray
) -> tuple[Part, dict]:
    """A text label with an arrow to one mid-range point, offset towards the plot's middle."""
    low = len(x) * 3 // 10
    i = int(np.argsort(x)[rng.integers(low, max(len(x) * 7 // 10, low + 1))])
    color, text = pick(rng, ("black", "red", "blue", "grey")), pick(rng, ANNOTATION_TEXTS)
    dx = -1 if x[i] > np.median(x) else 1
    dy = -1 if y[i] > np.median(y) else 1
    annotation = ax.annotate(
        text,
        xy=(x[i], y[i]),
        xytext=(dx * 28, dy * 22),
        textcoords="offset pixels",
        ha="center",
        va="center",
        color=PALETTE[color],
        arrowprops={"arrowstyle": "->", "color": PALETTE[color], "lw": style.pt(1.2)},
        **style.text(0.9),
    )
    return Part("annotation", text, (annotation,), color), {"text": text, "color": color}


def curve(rng: np.random.Generator, x: np.ndarray, positive: bool, scale: float) -> np.ndarray:
    """A noisy curve of a random shape near `scale`; `positive` spreads it over decades."""
    t = (x - x.min()) / (np.ptp(x) or 1.0)
    shape = int(rng.integers(5))
    if shape == 0:
        y = np.exp(-t * rng.uniform(1, 5))
    elif shape == 1:
        y = 1 / (1 + np.exp(-(t - rng.uniform(0.3, 0.7)) * rng.uniform(6, 20)))
    elif shape == 2:
        y = np.sin(2 * np.pi * t * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.exp(-t)
    elif shape == 3:
        y = t * rng.uniform(-1, 2)
    else:
        y = np.cumsum(rng.normal(0, 0.1, t.size))
    y = y + rng.normal(0, 0.03, t.size)
    if positive:
        y = 10 ** ((y - y.min()) / (np.ptp(y) or 1.0) * rng.uniform(1, 3))
    return y * scale * rng.uniform(0.5, 2)


def maybe_annotate(
    ax: Axes,
    rng: np.random.Generator,
    style: Style,
    x,
    y,
    attributes: dict,
    parts: list[Part],
    chance: float,
) -> tuple[str, ...]:
    """With probability `chance`, point an arrow at one data point (recording it in
    `attributes` and `parts`); returns the caption extras that mention it."""
    if rng.random() >= chance:
        return ()
    part, attributes["annotation"] = add_annotation(ax, rng, style, np.asarray(x), np.asarray(y))
    parts.append(part)
    return (f'{a(part.color)} arrow annotation "{part.label}"',)


def legend_phrase(position: str) -> str:
    """How a caption names a legend position."""
    if position == "outside right":
        return "legend outside the plot on the right"
    return f"legend in the {position}"


def finish(
    ax: Axes,
    rng: np.random.Generator,
    style: Style,
    *,
    what: str,
    body: str,
    short: str,
    topic: str,
    attributes: dict,
    parts: list[Part],
    legend: Part | None = None,
    extras: tuple[str, ...] = (),
    grid: bool = True,
) -> Drawn:
    """Add the shared decorations (title, grid, axis-label parts) and the common attributes."""
    extras = list(extras)
    title = style.title.format(topic) if style.title else None
    if title:
        text = ax.set_title(title, loc=pick(rng, ("center", "left")), **style.text(1.1))
        parts.append(Part("title", title, (text,)))
    has_grid = grid and style.grid
    if has_grid:
        ax.grid(True, color="0.8", linestyle=pick(rng, ("-", "--", ":")), linewidth=style.pt(0.8))
    for name, axis in (("xlabel", ax.xaxis), ("ylabel", ax.yaxis)):
        if axis.label.get_text():
            parts.append(Part(name, axis.label.get_text(), (axis.label,)))
    if legend is not None:
        parts.append(legend)
        extras.append(legend_phrase(style.legend))
    for axis in ("x", "y"):
        if getattr(ax, f"get_{axis}scale")() == "log":
            extras.append(f"logarithmic {axis} axis")
    if has_grid:
        extras.append("grid lines")
    attributes = {
        "title": title,
        "topic": topic,
        "legend": legend.label if legend else None,
        "has_grid": has_grid,
        "xscale": ax.get_xscale(),
        "yscale": ax.get_yscale(),
        "font": style.font,
        "annotation": None,
        **attributes,
    }
    return Drawn(what, body, tuple(extras), short, attributes, tuple(parts))
