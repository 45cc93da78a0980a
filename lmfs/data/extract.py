"""Plain text from HTML bytes (stdlib ``html.parser``), for Common Crawl WARC payloads.

Decoding (:func:`decode_html`), in order:

1. A byte-order mark decides (UTF-8, UTF-16 LE/BE).
2. Bytes with NULs in the first 8 KiB (and no UTF-16 BOM) are binary: ``None``.
3. A charset declared in the first 4 KiB — ``<meta charset=...>`` or
   ``<meta http-equiv="Content-Type" content="...; charset=...">`` — is used when Python knows it and the bytes
   decode under it without error. As browsers do (WHATWG Encoding), ``iso-8859-1`` / ``latin-1`` / ``us-ascii``
   mean ``windows-1252``, ``gb2312`` / ``gbk`` mean ``gb18030``, and a declared UTF-16 means UTF-8.
4. Otherwise strict UTF-8.
5. Otherwise, when the bytes hold valid multi-byte UTF-8 sequences and no more invalid bytes than valid
   sequences (UTF-8 with a few damaged bytes), UTF-8 with U+FFFD for the bad bytes; else the declared charset
   with replacement if there was one, else ``windows-1252`` with replacement.
6. Text in which more than 10% of the characters are C0 control characters (other than tab, line feed,
   form feed and carriage return) is binary: ``None``.

Extraction (:func:`extract_text`):

* the contents of ``script``, ``style``, ``noscript``, ``template``, ``head``, ``svg`` and ``iframe`` are
  dropped (``head`` ends at ``</head>``, ``<body>`` or the first tag that cannot be in a head, as in HTML5);
  comments, doctypes and processing instructions are dropped; attributes (``alt``, ``title``) are not text;
* character references are unescaped (``&amp;``, ``&#233;``, ``&eacute;``; ``&nbsp;`` becomes a space);
* block elements (``div``, ``li``, ``tr``, ``h1``…, ``section``, …) start and end a line; paragraph-like blocks
  (``p``, headings, lists, tables, ``blockquote``, ``pre``, ``hr``) are separated by one blank line; ``<br>``
  is a line break (two give a blank line); table cells (``td``, ``th``) are separated by a space;
* inside a line every whitespace run (newlines in the source included, except inside ``pre``) becomes one
  space and lines are stripped; runs of blank lines collapse to one; leading and trailing blank lines go.

The result is ``""`` for empty input or HTML without visible text.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

__all__ = ["decode_html", "extract_text", "extract_text_from_html_bytes"]

_SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe"})
_HEAD_OK = frozenset(
    {"title", "meta", "link", "style", "script", "base", "noscript", "template", "head", "html"}
)
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre", "hr", "figure"}
)
_BLOCK = (
    frozenset(
        {
            "address",
            "article",
            "aside",
            "body",
            "caption",
            "center",
            "dd",
            "details",
            "dialog",
            "div",
            "dt",
            "fieldset",
            "figcaption",
            "footer",
            "form",
            "header",
            "hgroup",
            "html",
            "legend",
            "li",
            "main",
            "menu",
            "nav",
            "option",
            "section",
            "summary",
            "tbody",
            "tfoot",
            "thead",
            "title",
            "tr",
        }
    )
    | _PARAGRAPH
)
_CELL = frozenset({"td", "th"})
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)

# Markers in the intermediate text: a soft line break and a soft paragraph break (they merge with neighbours).
_LINE, _PARA = "\x01", "\x02"
_BREAK_RUN = re.compile(r"[\s\x01\x02]*[\n\x01\x02][\s\x01\x02]*")
_SPACE_RUN = re.compile(r"[^\S\n]+")
_WS_RUN = re.compile(r"\s+")

_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_ALIASES = {
    "latin_1": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "utf_16": "utf-8",
    "utf_16_le": "utf-8",
    "utf_16_be": "utf-8",
    "iso8859_9": "cp1254",
    "tis_620": "cp874",
}


def _declared_charset(data: bytes) -> str | None:
    m = _META_CHARSET.search(data[:4096])
    if not m:
        return None
    try:
        name = codecs.lookup(m.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    name = name.replace("-", "_")
    return _ALIASES.get(name, name)


def _mostly_utf8(data: bytes) -> bool:
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd") - data.decode("utf-8", "ignore").count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 0x7F and ch != "\ufffd")
    return good > 0 and bad <= good


def decode_html(data: bytes) -> str | None:
    """The text of HTML bytes (rules in the module docstring), or None when the bytes are not text."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, "replace")
    if b"\x00" in data[:8192]:
        return None
    declared = _declared_charset(data)
    text = None
    for codec in ([declared] if declared else []) + ["utf-8"]:
        try:
            text = data.decode(codec)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        if _mostly_utf8(data):
            text = data.decode("utf-8", "replace")
        else:
            text = data.decode(declared or "cp1252", "replace")
    sample = text[:8192]
    controls = sum(1 for ch in sample if ord(ch) < 0x20 and ch not in "\t\n\r\f")
    if sample and controls > 0.1 * len(sample):
        return None
    return text


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip: dict[str, int] = {}
        self.pre = 0

    def _end_head(self) -> None:
        self.skip.pop("head", None)

    def handle_starttag(self, tag: str, attrs) -> None:
        if "head" in self.skip and tag not in _HEAD_OK:
            self._end_head()
        if tag in _SKIP:
            self.skip[tag] = self.skip.get(tag, 0) + 1
            return
        if tag == "br":
            self.parts.append("\n")
        else:
            self._separate(tag)
        if tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if self.skip.get(tag, 0) > 1:
                self.skip[tag] -= 1
            else:
                self.skip.pop(tag, None)
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        self._separate(tag)

    def _separate(self, tag: str) -> None:
        """The break an element's start or end leaves: a paragraph, a line, a space between cells, or none."""
        if tag in _PARAGRAPH:
            self.parts.append(_PARA)
        elif tag in _BLOCK:
            self.parts.append(_LINE)
        elif tag in _CELL:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        data = data.replace("\x01", "").replace("\x02", "").replace("\ufeff", "")
        if self.pre:
            data = data.replace("\r\n", "\n").replace("\r", "\n")
            self.parts.append(_SPACE_RUN.sub(" ", data))
        else:
            self.parts.append(_WS_RUN.sub(" ", data))


def _breaks(m: re.Match) -> str:
    run = m.group(0)
    return "\n\n" if _PARA in run or run.count("\n") >= 2 else "\n"


def extract_text(html: str) -> str:
    """Visible text of an HTML document (rules in the module docstring)."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    text = _BREAK_RUN.sub(_breaks, "".join(parser.parts))
    lines = [_SPACE_RUN.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def extract_text_from_html_bytes(html_bytes: bytes) -> str | None:
    text = decode_html(html_bytes)
    return None if text is None else extract_text(text)
