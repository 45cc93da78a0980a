"""Report building blocks shared by the units' report sections and the harness's renderer.

A unit shows itself in the HTML report with a function ``section(reports_dir: Path) -> Section | list[Section] |
None`` (``None`` when it has nothing to show yet) built from the helpers here; the renderer
(:mod:`lmfs.harness.render`) lists the providers and assembles the page. This module imports nothing of lmfs.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from typing import Any


@dataclass
class Section:
    """One section of the report: an id (anchor), a title, an HTML body fragment, and a sort order."""

    id: str
    title: str
    html: str
    order: int = 50


def svg_figure(fig: Any) -> str:
    """A matplotlib figure as an inline ``<svg>`` string (closes the figure)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    start = text.find("<svg")
    return f'<div class="figure">{text[start:]}</div>'


def table_html(df: Any, float_format: str = "{:.4g}", index: bool = False) -> str:
    """A pandas DataFrame as an HTML table with the report's styling."""
    return df.to_html(
        index=index,
        classes="table",
        border=0,
        na_rep="",
        float_format=lambda x: float_format.format(x),
        escape=True,
    )


def escape(text: Any) -> str:
    return html.escape(str(text))


def note(text: str) -> str:
    """A short explanatory paragraph (plain text, escaped)."""
    return f'<p class="note">{escape(text)}</p>'
