"""Assemble ``reports/index.html`` from :data:`lmfs.harness.report.SECTION_PROVIDERS`.

Each provider is imported and called in turn; a provider whose module does not exist is skipped silently
(units land at different times), one that raises becomes an error box in its place. The page is one
self-contained file: inline CSS, inline SVG figures, no scripts, no external links.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import traceback
from pathlib import Path

from lmfs.harness.atomic import write_text_atomic
from lmfs.harness.report import SECTION_PROVIDERS, Section, escape


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-") or "section"


def _module_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True when ``module`` itself (or a package above it) does not exist, not something it imports."""
    return exc.name is not None and (module == exc.name or module.startswith(exc.name + "."))


def collect_sections(reports_dir: Path, providers: list[str] | None = None) -> list[Section]:
    sections: list[Section] = []
    for order, spec in enumerate(providers if providers is not None else SECTION_PROVIDERS):
        module_name, _, func_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _module_missing(exc, module_name):
                continue
            sections.append(_error_section(spec, order))
            continue
        except Exception:
            sections.append(_error_section(spec, order))
            continue
        func = getattr(module, func_name or "section", None)
        if func is None:
            continue
        try:
            result = func(Path(reports_dir))
        except Exception:
            sections.append(_error_section(spec, order))
            continue
        if result is None:
            continue
        for sec in result if isinstance(result, list) else [result]:
            if isinstance(sec, Section):
                sections.append(sec)
    seen: set[str] = set()
    for sec in sections:  # unique anchors
        base = _slug(sec.id)
        anchor, i = base, 2
        while anchor in seen:
            anchor, i = f"{base}-{i}", i + 1
        seen.add(anchor)
        sec.id = anchor
    return sorted(sections, key=lambda s: s.order)


def _error_section(spec: str, order: int) -> Section:
    tb = traceback.format_exc(limit=8)
    return Section(
        id=f"error-{spec}",
        title=f"{spec} (failed)",
        html=f'<div class="error"><p>The section provider <code>{escape(spec)}</code> raised an error; the rest '
        f"of the report is unaffected.</p><pre>{escape(tb)}</pre></div>",
        order=90 + order,
    )


def render(sections: list[Section], title: str = "lmfs report") -> str:
    import jinja2

    from lmfs.harness.machine import git_commit

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lmfs.harness", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    commit, dirty = git_commit()
    return env.get_template("report.html.j2").render(
        title=title,
        sections=sections,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=(commit or "unknown") + ("-dirty" if dirty else ""),
    )


def build_report(reports_dir: Path, out: Path | None = None, providers: list[str] | None = None) -> Path:
    """Write the report (default ``<reports_dir>/index.html``) atomically; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out) if out else Path(reports_dir) / "index.html"
    html = render(collect_sections(Path(reports_dir), providers))
    write_text_atomic(out, html)
    return out
