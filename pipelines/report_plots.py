"""Bar charts for `wudao report`, drawn with matplotlib's Agg canvas (no display, no pyplot state) and returned
as `data:image/png;base64,...` URIs, so the report is one file that opens from disk."""
from __future__ import annotations

import base64
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def bar_chart(categories: list[str], series: dict[str, list[float]], title: str, value_label: str,
              category_label: str = "", horizontal: bool = False) -> str:
    """Grouped bars: one group per category, one bar per series (in order); a PNG data URI.

    `horizontal` puts the categories on the y axis, top to bottom (for long labels such as drop reasons)."""
    n_cat, n_series = len(categories), max(len(series), 1)
    if horizontal:
        fig = Figure(figsize=(8.0, max(2.0, 0.18 * n_cat * n_series + 1.2)), dpi=100)
    else:
        fig = Figure(figsize=(max(5.0, min(12.0, 0.55 * n_cat * n_series + 2.0)), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / n_series
    for i, (name, values) in enumerate(series.items()):
        positions = [c + (i - (n_series - 1) / 2) * width for c in range(n_cat)]
        draw = ax.barh if horizontal else ax.bar
        draw(positions, values, width, label=name, color=COLORS[i % len(COLORS)])
    ticks = list(range(n_cat))
    if horizontal:
        ax.set_yticks(ticks, categories, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(value_label)
        ax.set_ylabel(category_label)
    else:
        ax.set_xticks(ticks, categories, fontsize=8, rotation=30 if n_cat > 6 else 0,
                      ha="right" if n_cat > 6 else "center")
        ax.set_ylabel(value_label)
        ax.set_xlabel(category_label)
        ax.margins(y=0.15)  # headroom for the legend
    (ax.xaxis if horizontal else ax.yaxis).set_major_locator(MaxNLocator(integer=True))  # counts: whole ticks
    ax.set_title(title, fontsize=11)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return png_uri(fig)


def png_uri(fig: Figure) -> str:
    """The figure as a PNG data URI (no `Software` tag, so the same numbers give the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
