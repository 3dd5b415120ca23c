"""Broken and malicious files in one batch: each ends precisely, the worker survives, the good
files complete, and nothing is written outside the data dir. All files are built here."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.service import Service

_GOOD = "The quartermaster counted forty barrels of salted herring in the hold."


@pytest.fixture(scope="module")
def hostile_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with Service(
        database_url,
        tmp_path_factory.mktemp("hostile"),
        workers=1,
        extra_env={
            "PREPSHELF_PARSE_MEMORY_LIMIT_MB": "1024",
            "PREPSHELF_PARSE_TIMEOUT_S": "60",
        },
    ) as svc:
        yield svc


def _pdf(content: bytes | None, *, filter_flate: bool = False, extra_trailer: bytes = b"") -> bytes:
    """A one-page PDF with a correct xref; `content` is the page's content stream."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        + (b"/Contents 4 0 R " if content is not None else b"")
        + b"/Resources << /Font << /F1 5 0 R >> >> >>",
    ]
    if content is not None:
        head = b"<< /Length %d" % len(content) + (b" /Filter /FlateDecode" if filter_flate else b"")
        objects.append(head + b" >>\nstream\n" + content + b"\nendstream")
    else:
        objects.append(b"<< >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R " % (len(objects) + 1) + extra_trailer + b">>\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _text_stream(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (" + text.encode() + b") Tj ET"


def _pdf_bomb(size: int) -> bytes:
    """A FlateDecode content stream inflating to `size` bytes of spaces."""
    comp = zlib.compressobj(9)
    block = b" " * (16 * 1024 * 1024)
    parts = [comp.compress(block) for _ in range(size // len(block))]
    parts.append(comp.flush())
    return _pdf(b"".join(parts), filter_flate=True)


def _docx(tmp: Path, name: str, body: str, *, doctype: str = "", extra: Any = None) -> Path:
    """A minimal DOCX (content types, relationships, document) built with zipfile."""
    path = tmp / name
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.'
            'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
            '"application/xml"/><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        zf.writestr(
            "_rels/.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
            + (
                '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/'
                'officeDocument/2006/relationships/customXml" Target="customXml/item1.xml"/>'
                if extra is not None
                else ""
            )
            + "</Relationships>",
        )
        zf.writestr(
            "word/document.xml",
            f'<?xml version="1.0"?>{doctype}<w:document xmlns:w="{w}"><w:body><w:p><w:r><w:t>'
            f"{body}</w:t></w:r></w:p></w:body></w:document>",
        )
        if extra is not None:
            extra(zf)
    return path


def _bomb_part(zf: zipfile.ZipFile) -> None:
    # 1.5 GB of zeros (about 1.5 MB compressed) in a part python-docx loads whole.
    with zf.open("customXml/item1.xml", "w", force_zip64=True) as part:
        block = b"\0" * (16 * 1024 * 1024)
        for _ in range(96):
            part.write(block)


def _build(tmp: Path) -> dict[str, Path]:
    files: dict[str, bytes] = {
        "good.txt": _GOOD.encode(),
        "encrypted.pdf": _pdf(
            _text_stream("secret"),
            extra_trailer=b"/Encrypt << /Filter /Standard /V 1 /R 2 /O <"
            + b"11" * 32
            + b"> /U <"
            + b"22" * 32
            + b"> /P -4 >> /ID [<0123456789abcdef0123456789abcdef> "
            b"<0123456789abcdef0123456789abcdef>] ",
        ),
        "truncated.pdf": _pdf(_text_stream("half a document " * 50))[:180],
        "no-text-layer.pdf": _pdf(None),
        "zero.txt": b"",
        "binary.txt": bytes(range(256)) * 64,
        "latin1.txt": "Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve fa\xe7ade.".encode("cp1252"),
        "one-line.txt": b"x" * (20 * 1024 * 1024),
        "deep.html": (
            "<html><body><p>surface</p>" + "<div>" * 50_000 + "abyss" + "</div>" * 50_000
        ).encode()
        + b"</body></html>",
        "image-named.pdf": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
        "pdf-named.txt": _pdf(_text_stream("mislabelled but honest text")),
        "bomb.pdf": _pdf_bomb(2 * 1024**3),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp / name
        paths[name].write_bytes(data)
    xxe = (
        '<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">'
        '<!ENTITY esc SYSTEM "file:///tmp/prepshelf_xxe_probe.txt">]>'
    )
    paths["xxe.docx"] = _docx(tmp, "xxe.docx", "visible words &xxe; &esc; end", doctype=xxe)
    paths["docx-bomb.docx"] = _docx(tmp, "docx-bomb.docx", "tiny body", extra=_bomb_part)
    return paths


# name -> (status, code or None, words the message must contain — any of them)
EXPECTED: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "good.txt": ("completed", None, ()),
    "encrypted.pdf": ("failed", "invalid_file", ("encrypted",)),
    "truncated.pdf": ("failed", "invalid_file", ("corrupt",)),
    "no-text-layer.pdf": ("failed", "invalid_file", ("no text layer",)),
    "zero.txt": ("failed", "invalid_file", ("empty file (0 bytes)",)),
    "binary.txt": ("failed", "unsupported_file", ("binary content",)),
    "latin1.txt": ("completed", None, ()),
    "one-line.txt": ("failed", "invalid_file", ("unbroken runs",)),
    "deep.html": ("completed", None, ()),
    # Images are documents since OCR: a PNG signature followed by zeros is a broken PNG.
    "image-named.pdf": ("failed", "invalid_file", ("corrupt png",)),
    "pdf-named.txt": ("completed", None, ()),
    "bomb.pdf": ("failed", "invalid_file", ("out of memory", "longer than", "no text layer")),
    "xxe.docx": ("completed", None, ()),
    "docx-bomb.docx": ("failed", "invalid_file", ("out of memory", "longer than")),
}


def test_hostile_batch(hostile_service: Service, tmp_path: Path) -> None:
    svc = hostile_service
    Path("/tmp/prepshelf_xxe_probe.txt").unlink(missing_ok=True)
    paths = _build(tmp_path)
    assert set(paths) == set(EXPECTED)
    before = {p for p in tmp_path.parent.rglob("*") if p.is_file()}
    client = svc.openai()
    vs = client.vector_stores.create(name="hostile")
    handles = [p.open("rb") for p in paths.values()]
    try:
        batch = client.vector_stores.file_batches.upload_and_poll(
            vector_store_id=vs.id, files=handles, max_concurrency=4
        )
    finally:
        for h in handles:
            h.close()
    names = {f.id: f.filename for f in client.files.list(purpose="assistants")}
    outcome = {
        names[f.id]: f for f in client.vector_stores.files.list(vector_store_id=vs.id, limit=100)
    }
    problems = {}
    for name, (status, code, words) in EXPECTED.items():
        vsf = outcome[name]
        error = vsf.last_error
        ok = vsf.status == status and (
            error is None
            if code is None
            else error.code == code
            and error.message.startswith(name)
            and any(w in error.message.lower() for w in words)
        )
        if not ok:
            problems[name] = (vsf.status, error)
    assert problems == {}
    counts = batch.file_counts
    assert (counts.in_progress, counts.total) == (0, len(paths))
    assert counts.completed == sum(1 for s, _, _ in EXPECTED.values() if s == "completed")

    # XXE: the entity is never resolved, its target never read into text.
    with svc.db() as db:
        texts = [
            r["text"]
            for r in db.execute(
                "SELECT c.text FROM chunks c JOIN files f ON f.id = c.file_id "
                "WHERE c.vector_store_id = %s AND f.filename = 'xxe.docx'",
                [vs.id],
            ).fetchall()
        ]
    assert texts and "visible words" in texts[0]
    assert not any("root:" in t for t in texts)

    # The service is up and the worker still takes work.
    assert svc.http().get("/readyz").status_code == 200
    later = tmp_path / "later.txt"
    later.write_text("After the storm the harbour master reopened the port.")
    with later.open("rb") as fh:
        done = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=fh)
    assert done.status == "completed"

    # Nothing written outside the data dir.
    assert not Path("/tmp/prepshelf_xxe_probe.txt").exists()
    after = {p for p in tmp_path.parent.rglob("*") if p.is_file()}
    new = {
        p
        for p in after - before
        if not p.is_relative_to(svc.data_dir)
        and not p.relative_to(tmp_path.parent).parts[0].startswith("pg")
    }  # the embedded PostgreSQL of the test session lives beside us
    assert new - {later} == set()
