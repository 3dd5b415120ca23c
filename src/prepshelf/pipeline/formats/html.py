"""HTML text: visible text only, blocks on their own lines, no recursion however deep."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import lxml.html
from lxml import etree

from prepshelf.pipeline.formats import Extracted
from prepshelf.pipeline.formats.text import decode_bytes

_SKIP = frozenset({"script", "style", "noscript", "template", "head", "ix:header", "iframe"})
_SKIP |= {"object", "embed", "svg", "math", "canvas", "audio", "video", "select"}
_BLOCK = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details"}
    | {"dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li"}
    | {"main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot"}
    | {"thead", "title", "tr", "ul", "textarea", "br", "listing", "xmp", "plaintext"}
)
# Void elements never get an end tag, so the streaming fallback must not wait for one.
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
_VOID |= {"param", "source", "track", "wbr"}
_CELLS = frozenset({"td", "th"})
_PREFORMATTED = frozenset({"pre", "textarea", "listing", "xmp", "plaintext"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SPACES = re.compile(r"\s+")
_DISPLAY_NONE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
# libxml2 gives up (and drops the rest of the document) beyond this nesting depth.
_LXML_MAX_DEPTH_ERROR = "Excessive depth"


def extract_html(path: Path) -> Extracted:
    data = path.read_bytes()
    match = _META_CHARSET.search(data[:4096])
    declared = match.group(1).decode("ascii") if match else None
    text, encoding = decode_bytes(data, declared)
    return Extracted(text=html_to_text(text), encoding=encoding)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document (title first), blocks and cells kept apart."""
    # lxml refuses str input with an encoding declaration; control chars upset libxml2.
    markup = _CONTROL.sub("", _XML_DECLARATION.sub("", markup, count=1))
    if not markup.strip():
        return ""
    parser = lxml.html.HTMLParser(huge_tree=True, remove_comments=True, remove_pis=True)
    try:
        root = lxml.html.document_fromstring(markup, parser=parser)
    except etree.ParserError:  # "Document is empty"
        return ""
    if any(_LXML_MAX_DEPTH_ERROR in entry.message for entry in parser.error_log):
        return _stream_text(markup)
    title = root.findtext(".//title") or ""
    return f"{title}\n{_tree_text(root)}"


def _hidden(tag: str, attrs: dict[str, str | None]) -> bool:
    if tag in _SKIP or "hidden" in attrs:
        return True
    return bool(_DISPLAY_NONE.search(attrs.get("style") or ""))


def _inline(text: str, preformatted: int) -> str:
    return text if preformatted else _SPACES.sub(" ", text)


def _tree_text(root: lxml.html.HtmlElement) -> str:
    parts: list[str] = []
    pre = 0
    walker = etree.iterwalk(root, events=("start", "end"))
    for event, el in walker:
        tag = el.tag if isinstance(el.tag, str) else ""
        hidden = _hidden(tag, dict(el.attrib))
        if event == "start":
            if hidden:
                walker.skip_subtree()  # the end event still comes, for the tail
                continue
            pre += tag in _PREFORMATTED
            if tag in _BLOCK:
                parts.append("\n")
            elif tag in _CELLS:
                parts.append("\t")
            if el.text:
                parts.append(_inline(el.text, pre))
            continue
        if not hidden:
            pre -= tag in _PREFORMATTED
            if tag in _BLOCK:
                parts.append("\n")
            elif tag in _CELLS:
                parts.append("\t")
        if el.tail:
            parts.append(_inline(el.tail, pre))
    return "".join(parts)


class _StreamText(HTMLParser):
    """Fallback for documents nested deeper than libxml2 allows: no tree, no depth limit."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pre = 0
        self.skip_tag: str | None = None
        self.skip_level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            self.handle_startendtag(tag, attrs)
            return
        if self.skip_tag == "head" and tag == "body":
            self.skip_tag, self.skip_level = None, 0  # </head> is optional in HTML
        if self.skip_tag is not None:
            self.skip_level += tag == self.skip_tag
        elif _hidden(tag, dict(attrs)):
            self.skip_tag, self.skip_level = tag, 1
        else:
            self.pre += tag in _PREFORMATTED
            self._separate(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip_tag is not None:
            self.skip_level -= tag == self.skip_tag
            if self.skip_level == 0:
                self.skip_tag = None
            return
        self.pre = max(0, self.pre - (tag in _PREFORMATTED))
        self._separate(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip_tag is None and not _hidden(tag, dict(attrs)):
            self._separate(tag)

    def handle_data(self, data: str) -> None:
        if self.skip_tag is None:
            self.parts.append(_inline(data, self.pre))

    def _separate(self, tag: str) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")
        elif tag in _CELLS:
            self.parts.append("\t")


def _stream_text(markup: str) -> str:
    extractor = _StreamText()
    extractor.feed(markup)
    extractor.close()
    return "".join(extractor.parts)
