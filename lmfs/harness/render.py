"""Assemble ``reports/index.html`` from the section providers in :data:`SECTION_PROVIDERS`.

Each provider is ``"module:function"``, a function ``section(reports_dir) -> Section | list[Section] | None``
built from :mod:`lmfs.reporting`. A provider that cannot be found (misspelled module or function) stops the
report with :class:`ReportError`; one that raises while building its section becomes an error box in its place.
The page is one self-contained file: inline CSS, inline SVG figures, no scripts, no external links.

To add a section: write the function beside your unit (e.g. ``lmfs/scaling/report.py``) and add a line here.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import traceback
from pathlib import Path

from lmfs.atomic import write_text_atomic
from lmfs.reporting import Section, escape

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
    "lmfs.infer.report:section",
    "lmfs.data.report:section",
    "lmfs.parallel.report:section",
    "lmfs.eval.report:section",
]


class ReportError(Exception):
    """A section provider that does not exist (its module or its function); the message names it."""


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-") or "section"


def _find_provider(spec: str):
    """The provider function named by ``spec``; ReportError when the module or the function is not there.
    (An import error *inside* an existing module propagates: that is a broken section, not a missing one.)"""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ReportError(f"section provider {spec!r} is not 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ReportError(f"section provider {spec!r}: no module {module_name!r}") from None
        raise
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ReportError(f"section provider {spec!r}: {module_name} has no function {func_name!r}")
    return func


def collect_sections(reports_dir: Path, providers: list[str] | None = None) -> list[Section]:
    sections: list[Section] = []
    for order, spec in enumerate(providers if providers is not None else SECTION_PROVIDERS):
        try:
            func = _find_provider(spec)
            result = func(Path(reports_dir))
        except ReportError:
            raise
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
