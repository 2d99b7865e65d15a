"""The look of a synthetic figure, and the named vocabulary its captions use.

Every colour, line style, marker and colour map has a plain-English name, so a caption
or a query can say "a red dashed line" and mean exactly the colour that was drawn. Sizes
are chosen in pixels and converted to points for matplotlib, so a 10-pixel font looks
the same at 72 and at 144 dpi.

Deliberately not handled: fonts that matplotlib does not ship (they would make the
pixels depend on the machine).
"""

import math
from dataclasses import dataclass

import numpy as np

KIND_PHRASES = {
    "line": "a line chart",
    "scatter": "a scatter plot",
    "bar": "a bar chart",
    "grouped_bar": "a grouped bar chart",
    "histogram": "a histogram",
    "box": "a box plot",
    "pie": "a pie chart",
    "heatmap": "a heatmap",
    "errorbar": "an error-bar plot",
    "multi_panel": "a two-panel figure",
}
PALETTE = {
    "red": "#d62728",
    "blue": "#1f77b4",
    "green": "#2ca02c",
    "orange": "#ff7f0e",
    "purple": "#9467bd",
    "black": "#111111",
    "brown": "#8c564b",
    "pink": "#e377c2",
    "grey": "#7f7f7f",
    "olive": "#9a9a1a",
    "cyan": "#17becf",
}
LINESTYLES = {"solid": "-", "dashed": "--", "dotted": ":", "dash-dot": "-."}
MARKERS = {
    "circle": "o",
    "square": "s",
    "triangle": "^",
    "diamond": "D",
    "cross": "x",
    "plus": "+",
    "star": "*",
}
FONTS = {"sans-serif": "DejaVu Sans", "serif": "DejaVu Serif", "monospace": "DejaVu Sans Mono"}
COLORMAPS = {
    "viridis": "viridis",
    "magma": "magma",
    "blue-to-red": "coolwarm",
    "white-to-blue": "Blues",
    "grey": "Greys",
    "yellow-to-red": "YlOrRd",
}
LEGEND_POSITIONS = (
    "upper left",
    "upper right",
    "lower left",
    "lower right",
    "upper center",
    "center right",
    "outside right",
)
VARIABLES = (
    ("time", "s"),
    ("temperature", "K"),
    ("pressure", "kPa"),
    ("voltage", "V"),
    ("current", "mA"),
    ("concentration", "mM"),
    ("frequency", "Hz"),
    ("accuracy", "%"),
    ("depth", "m"),
    ("velocity", "m/s"),
    ("energy", "eV"),
    ("wavelength", "nm"),
    ("dose", "mg"),
    ("yield", "%"),
    ("signal", "a.u."),
    ("epoch", ""),
    ("loss", ""),
    ("population", ""),
    ("strain", "%"),
    ("intensity", "counts"),
)
SERIES_NAMES = (
    "control",
    "treatment",
    "baseline",
    "model A",
    "model B",
    "simulation",
    "experiment",
    "theory",
    "sample 1",
    "sample 2",
    "group X",
    "group Y",
    "site north",
    "site south",
    "wild type",
    "mutant",
)
CATEGORY_SETS = {
    "day": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "metal": ("Cu", "Al", "Fe", "Ni", "Zn", "Ti", "Mg", "Sn"),
    "month": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"),
    "phase": ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"),
    "region": ("north", "south", "east", "west", "central"),
    "model": ("CNN", "RNN", "MLP", "ViT", "GBM", "SVM"),
    "level": ("low", "medium", "high", "very high"),
    "well": ("A1", "A2", "B1", "B2", "C1", "C2", "D1", "D2"),
}
TITLE_PREFIXES = ("Run", "Exp.", "Trial", "Batch", "Site", "Cohort", "Model", "Sample", "Study")
TITLE_SUFFIXES = ("response", "measurements", "by condition", "profile", "comparison", "trend")


@dataclass(frozen=True)
class Style:
    """Per-figure look shared by every drawer; sizes are in pixels of the saved image."""

    width: int
    height: int
    dpi: int
    font: str
    font_px: float
    line_px: float
    marker_px: float
    grid: bool
    legend: str
    title: str | None  # a template with one `{}` for the plotted variable

    def pt(self, px: float) -> float:
        """Pixels to points at this figure's dpi (matplotlib sizes are in points)."""
        return px * 72.0 / self.dpi

    def text(self, scale: float = 1.0) -> dict:
        """Keyword arguments that give a text artist this figure's font."""
        return {"fontfamily": FONTS[self.font], "fontsize": self.pt(self.font_px * scale)}


def pick(rng: np.random.Generator, options, k: int | None = None):
    """One option (k=None) or k distinct options, in the order drawn."""
    options = list(options)
    if k is None:
        return options[int(rng.integers(len(options)))]
    return [options[i] for i in rng.choice(len(options), size=k, replace=False)]


def sample_style(rng: np.random.Generator) -> Style:
    """Size between 256 and 448 px a side, aspect 1:1 to 16:10 either way, varied dpi."""
    aspect = pick(rng, (1.0, 1.25, 4 / 3, 1.5, 1.6))
    long_side = int(rng.integers(math.ceil(256 * aspect), 449))
    short_side = round(long_side / aspect)
    width, height = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
    # The drawer fills in its own variable: "Run 417: {} response" -> "Run 417: pressure response".
    prefix, number = pick(rng, TITLE_PREFIXES), int(rng.integers(1, 1000))
    title = f"{prefix} {number}: {{}} {pick(rng, TITLE_SUFFIXES)}"
    return Style(
        width=width,
        height=height,
        dpi=pick(rng, (72, 80, 96, 100, 110, 120, 144)),
        font=pick(rng, FONTS),
        font_px=float(rng.uniform(8.5, 12.5)),
        line_px=float(rng.uniform(1.2, 3.0)),
        marker_px=float(rng.uniform(4.5, 8.0)),
        grid=bool(rng.random() < 0.4),
        legend=pick(rng, LEGEND_POSITIONS),
        title=title if rng.random() < 0.85 else None,
    )


def axis_label(variable: tuple[str, str]) -> str:
    """`("pressure", "kPa")` -> "pressure (kPa)"; a unitless variable keeps its bare name."""
    name, unit = variable
    return f"{name} ({unit})" if unit else name


def a(noun_phrase: str) -> str:
    """`"orange line"` -> "an orange line"; `"red line"` -> "a red line"."""
    return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase


def join_words(items: list[str]) -> str:
    """`["a", "b", "c"]` -> "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
