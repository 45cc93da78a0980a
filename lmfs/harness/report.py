"""HTML report building blocks. (The renderer that assembles reports/index.html lives beside this.)

A report section is any callable ``section(reports_dir: Path) -> Section | list[Section] | None`` listed in
:data:`SECTION_PROVIDERS` as ``"module:function"``. It returns ``None`` when it has nothing to show. To add a
section: write the function in your unit (e.g. ``lmfs/scaling/report.py``) and add one line to the list.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from typing import Any

SECTION_PROVIDERS: list[str] = [
    "lmfs.harness.sections:grades",
    "lmfs.harness.sections:benchmarks",
    "lmfs.harness.sections:history",
    "lmfs.tokenizer.report:section",
    "lmfs.nn.report:section",
    "lmfs.train.report:section",
    "lmfs.scaling.report:section",
    "lmfs.profile.report:section",
    "lmfs.kernels.report:section",
]


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
