"""DOCX and PPTX text via python-docx / python-pptx."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import docx
import pptx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml.ns import qn
from lxml import etree
from pptx.shapes.group import GroupShape

from prepshelf.pipeline.formats import Extracted, PageText

_W_P, _W_T, _W_TAB = qn("w:p"), qn("w:t"), qn("w:tab")
_W_BR, _W_CR, _W_TC, _W_TR = qn("w:br"), qn("w:cr"), qn("w:tc"), qn("w:tr")
_W_NB_HYPHEN = qn("w:noBreakHyphen")
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_WORD_TAGS = (_W_P, _W_T, _W_TAB, _W_BR, _W_CR, _W_TC, _W_TR, _W_NB_HYPHEN)


def extract_docx(path: Path) -> Extracted:
    """Headers, body (paragraphs and tables in document order), then footers; deduplicated."""
    document = docx.Document(str(path))
    headers: list[str] = []
    footers: list[str] = []
    # Each header/footer part once, however many sections point to it.
    rels = sorted(document.part.rels.values(), key=lambda rel: str(rel.target_ref))
    for rel in rels:
        if rel.is_external or rel.reltype not in (RT.HEADER, RT.FOOTER):
            continue
        text = _word_text(rel.target_part.element).strip()
        bucket = headers if rel.reltype == RT.HEADER else footers
        if text and text not in bucket:
            bucket.append(text)
    body = _word_text(document.element.body)
    return Extracted(text="\n\n".join([*headers, body, *footers]))


def _word_text(root: etree._Element) -> str:
    """Flat text of a WordprocessingML subtree without recursion (huge documents stay fast)."""
    # Text boxes are stored twice (mc:Choice and mc:Fallback); the parsed tree is ours to edit.
    for fallback in list(root.iter(_MC_FALLBACK)):
        parent = fallback.getparent()
        if parent is not None:
            parent.remove(fallback)
    parts: list[str] = []
    for el in root.iter(*_WORD_TAGS):
        tag = el.tag
        if tag == _W_T:
            parts.append(el.text or "")
        elif tag == _W_P:
            # Paragraphs in one table cell stay on the cell's line.
            parent = el.getparent()
            parts.append(" " if parent is not None and parent.tag == _W_TC else "\n")
        elif tag in (_W_TAB, _W_TC):
            parts.append("\t")
        elif tag == _W_NB_HYPHEN:
            parts.append("-")
        else:  # w:br, w:cr, w:tr
            parts.append("\n")
    return "".join(parts)


def extract_pptx(path: Path) -> Extracted:
    """Every slide's text frames, tables, grouped shapes and notes; slides split by a blank line."""
    presentation = pptx.Presentation(str(path))
    slides = [_slide_text(slide) for slide in presentation.slides]
    return Extracted(
        text="\n\n".join(slides),
        pages=len(slides),
        page_texts=tuple(PageText(i, text) for i, text in enumerate(slides, start=1)),
    )


def _slide_text(slide: Any) -> str:
    lines: list[str] = []
    for shape in _flat_shapes(slide.shapes):
        if shape.has_text_frame:
            lines.append(shape.text_frame.text)
        elif shape.has_table:
            for row in shape.table.rows:
                lines.append("\t".join(cell.text for cell in row.cells))
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None:
            lines.append(notes.text)
    return "\n".join(lines)


def _flat_shapes(shapes: Iterable[Any]) -> Iterator[Any]:
    """Shapes in order with groups expanded, using a stack instead of recursion."""
    stack = list(reversed(list(shapes)))
    while stack:
        shape = stack.pop()
        if isinstance(shape, GroupShape):
            stack.extend(reversed(list(shape.shapes)))
        else:
            yield shape
