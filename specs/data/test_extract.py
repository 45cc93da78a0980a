"""Specs for text extraction from HTML bytes (``run_extract_text_from_html_bytes``).

Hand-written pages check the rules any extractor should follow — script/style contents dropped, entities
unescaped, block elements on their own lines, whitespace collapsed, the declared charset honoured, invalid bytes
survived — without demanding one exact layout. The shared Common Crawl samples (``../shared/data/web``) check a
real page against the WET text Common Crawl extracted from it (loosely: most of its words, in order) and that
pages declared in windows-1251 / GB2312 / GBK come out in their script. A tiny WARC reader lives here so the
specs need nothing from the implementation under test.
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def extract(adapter, html: str | bytes) -> str:
    out = adapter.run_extract_text_from_html_bytes(html.encode("utf-8") if isinstance(html, str) else html)
    assert isinstance(out, str)
    return out


@pytest.mark.points(2)
def test_extract_drops_script_style_noscript(adapter):
    html = """<!DOCTYPE html><html><head><title>T</title>
    <style>body { color: red; } .hidden { display: none }</style>
    <script>var secretToken = "abc"; function track() { return 1 < 2; }</script></head>
    <body><p>Visible paragraph here.</p>
    <script type="text/javascript">document.write("injected words");</script>
    <noscript>Please enable javascript</noscript><!-- a comment nobody sees -->
    <p>Second visible paragraph.</p></body></html>"""
    out = extract(adapter, html)
    assert "Visible paragraph here." in out and "Second visible paragraph." in out
    for hidden in ["color", "secretToken", "function", "injected", "display", "comment nobody"]:
        assert hidden not in out, f"{hidden!r} should not be extracted"


@pytest.mark.points(1)
def test_extract_unescapes_entities(adapter):
    out = extract(
        adapter, "<p>Fish &amp; chips &lt;b&gt; caf&eacute; caf&#233; smile &#x263A; &quot;q&quot;</p>"
    )
    assert 'Fish & chips <b> café café smile ☺ "q"' in " ".join(out.split())
    out = extract(adapter, "<p>non&nbsp;breaking</p>")
    assert re.fullmatch(r"non\s+breaking", out.strip()), repr(out)


@pytest.mark.points(2)
def test_extract_blocks_become_lines_inline_does_not(adapter):
    html = """<body><div>alpha<div>beta <b>bold</b><i>italic</i> end</div>gamma</div>
    <h1>Heading</h1><p>para one</p><p>para two</p>
    <ul><li>item one</li><li>item two</li></ul>line<br>break</body>"""
    # A list item may carry a bullet: the course's reference (Resiliparse) renders ``<li>`` as ``  • item``.
    got = [re.sub(r"^[•*\-]\s+", "", line) for line in lines_of(extract(adapter, html))]
    assert got == [
        "alpha",
        "beta bolditalic end",
        "gamma",
        "Heading",
        "para one",
        "para two",
        "item one",
        "item two",
        "line",
        "break",
    ], got


@pytest.mark.points(1)
def test_extract_collapses_whitespace(adapter):
    html = (
        "<p>  lots \t of\n\n   space   </p>\n\n\n\n\n<div>\n   next  \n</div>"
        + "<div> </div>" * 20
        + "<p>end</p>"
    )
    out = extract(adapter, html)
    assert lines_of(out) == ["lots of space", "next", "end"]
    assert "\n\n\n" not in out.strip(), "runs of blank lines should collapse"
    assert all(line == line.strip() and "  " not in line for line in out.splitlines())


@pytest.mark.points(2)
@pytest.mark.parametrize(
    ("declaration", "codec", "text"),
    [
        ('<meta charset="windows-1252">', "cp1252", "café “quoted” — naïve €5"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
            "cp1252",
            "Ça coûte 5 € ‘ok’",
        ),
        ('<meta charset="ISO-8859-1">', "latin-1", "Grüße aus Köln, señor"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251" />',
            "cp1251",
            "Привет, мир",
        ),
        ('<meta charset="shift_jis">', "shift_jis", "日本語のテキスト"),
        ('<meta charset="gb2312">', "gb2312", "简体中文网页"),
    ],
)
def test_extract_honours_declared_charset(adapter, declaration, codec, text):
    html = f"<html><head>{declaration}<title>x</title></head><body><p>{text}</p></body></html>".encode(codec)
    assert text in extract(adapter, html)


@pytest.mark.points(1)
def test_extract_undeclared_utf8_and_invalid_bytes(adapter):
    assert "naïve café 日本" in extract(adapter, "<p>naïve café 日本</p>".encode())
    out = extract(adapter, b"<p>good start \xff\xfe\x80 good end</p><p>second \xc3\x28 line</p>")
    assert "good start" in out and "good end" in out and "second" in out


@pytest.mark.points(1)
def test_extract_empty_and_textless_input(adapter):
    for html in [b"", b"<html><head><title></title></head><body></body></html>", b"   \n  "]:
        out = adapter.run_extract_text_from_html_bytes(html)
        assert out is None or out.strip() == ""


@pytest.mark.points(1)
def test_extract_never_raises_on_arbitrary_bytes(adapter):
    @settings(max_examples=100, deadline=None)
    @given(data=st.binary(max_size=300) | st.text(max_size=200).map(lambda s: f"<p>{s}</p><div>{s}".encode()))
    def check(data):
        out = adapter.run_extract_text_from_html_bytes(data)
        assert out is None or isinstance(out, str)

    check()


# ----------------------------------------------------------------------------------------------- Common Crawl


def web_file(name: str) -> Path:
    env = os.environ.get("LMFS_SHARED_DIR")
    here = Path(__file__).resolve()
    for base in ([Path(env)] if env else []) + [here.parents[3] / "shared", Path.cwd().parent / "shared"]:
        path = base / "data" / "web" / name
        if path.exists():
            return path
    pytest.skip(f"shared web sample {name} not found (set LMFS_SHARED_DIR)")


def warc_records(path: Path):
    """(headers, block) per record of a gzipped WARC file (headers with lower-cased names)."""
    with gzip.open(path, "rb") as f:
        while True:
            line = f.readline()
            while line in (b"\r\n", b"\n"):
                line = f.readline()
            if not line:
                return
            assert line.startswith(b"WARC/"), line
            headers = {}
            while (line := f.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("utf-8", "replace").partition(":")
                headers[name.strip().lower()] = value.strip()
            yield headers, f.read(int(headers["content-length"]))


def html_responses(path: Path) -> list[tuple[str, bytes]]:
    out = []
    for headers, block in warc_records(path):
        if headers.get("warc-type") == "response":
            head, _, body = block.partition(b"\r\n\r\n")
            if b"text/html" in head.lower():
                out.append((headers.get("warc-target-uri", ""), body))
    return out


@pytest.mark.points(2)
def test_extract_whirlwind_page_matches_common_crawl_wet(adapter):
    """Most of the words of Common Crawl's own extraction (WET) appear, in order, in ours; no script text."""
    [(_uri, html)] = html_responses(web_file("whirlwind.warc.gz"))
    [wet] = [
        block
        for h, block in warc_records(web_file("whirlwind.warc.wet.gz"))
        if h.get("warc-type") == "conversion"
    ]
    expected = wet.decode("utf-8").split()
    out = extract(adapter, html)
    got = out.split()
    matcher = difflib.SequenceMatcher(None, expected, got, autojunk=False)
    in_order = sum(block.size for block in matcher.get_matching_blocks())
    assert in_order >= 0.8 * len(expected), f"only {in_order}/{len(expected)} WET words found in order"
    assert len(got) <= 2 * len(expected), "far more text than the page shows"
    assert "RLCONF" not in out and "function(" not in out, "script contents leaked"
    assert "Escopete" in out and "\ufffd" not in out


@pytest.mark.points(2)
def test_extract_cc_sample_pages_decode_in_their_script(adapter):
    """Every HTML page of the 16-page sample extracts; in those declaring a Cyrillic or Chinese charset in a
    ``<meta>``, at least 90% of the non-ASCII letters are in that script (no mojibake) and (almost) no U+FFFD."""
    pages = html_responses(web_file("cc_sample_16pages.warc.gz"))
    assert len(pages) >= 10
    scripts = {"windows-1251": r"[\u0400-\u04ff]", "gb2312": r"[\u4e00-\u9fff]", "gbk": r"[\u4e00-\u9fff]"}
    checked = 0
    for uri, html in pages:
        out = adapter.run_extract_text_from_html_bytes(html)
        assert out is None or isinstance(out, str), uri
        m = re.search(rb"<meta[^>]*charset\s*=\s*[\"']?([\w-]+)", html[:4096], re.IGNORECASE)
        charset = m.group(1).decode().lower() if m else None
        if charset in scripts:
            checked += 1
            assert out, uri
            letters = [ch for ch in out if ord(ch) > 127 and ch.isalpha()]
            in_script = len(re.findall(scripts[charset], "".join(letters)))
            assert in_script >= 3 and in_script >= 0.9 * len(letters), f"{uri}: declared {charset}, mojibake"
            assert out.count("\ufffd") <= max(2, len(out) // 200), f"{uri}: replacement characters"
            assert "<script" not in out.lower() and "<div" not in out.lower(), f"{uri}: markup leaked"
    assert checked >= 3
