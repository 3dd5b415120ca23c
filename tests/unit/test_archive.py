"""Archive expansion: safe members only, every limit enforced while bytes stream, in a sandbox."""

from __future__ import annotations

import functools
import io
import lzma
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from prepshelf.domain.archives import outcome_message
from prepshelf.errors import InvalidFileError
from prepshelf.pipeline.archive import ArchiveLimits, Expansion, expand_archive
from prepshelf.pipeline.archive_members import safe_member_name
from prepshelf.pipeline.sandbox import run_in_subprocess
from support.corpus import CORPUS, needs_corpus

LIMITS = ArchiveLimits(
    max_total_bytes=1024**3,
    max_members=10_000,
    max_ratio=200.0,
    ratio_floor_bytes=4 * 1024 * 1024,
    max_depth=3,
    max_name_component=255,
    max_name_bytes=1024,
)


def _expand(
    tmp_path: Path, archive: Path, limits: ArchiveLimits = LIMITS, out: str = "out", **kw: int
) -> Expansion:
    dest = tmp_path / out
    dest.mkdir(exist_ok=True)
    return expand_archive(archive, archive.name, dest=dest, limits=limits, **kw)


def _zip(path: Path, members: dict[str, bytes], **kw: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _only_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("../../etc/x", "path traversal"),
        ("a/../../b/../../escape.txt", "path traversal"),
        ("..\\..\\windows-style-escape.txt", "path traversal"),
        ("/tmp/prepshelf_dev_abs.txt", "absolute path"),
        ("C:\\Windows\\x.txt", "absolute path"),
        ("a\x00b.txt", "NUL byte"),
        ("./", "empty name"),
        ("x" * 300 + ".txt", "name too long"),
        ("/".join(["d" * 200] * 6), "name too long"),
    ],
)
def test_unsafe_names_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(Exception, match=reason):
        safe_member_name(raw, max_component=255, max_total=1024)


def test_names_are_cleaned_for_display() -> None:
    assert safe_member_name("./docs//a.md", max_component=255, max_total=1024) == "docs/a.md"
    assert safe_member_name("win\\dir\\b.txt", max_component=255, max_total=1024) == "win/dir/b.txt"
    assert safe_member_name("tab\there.txt", max_component=255, max_total=1024) == "tab_here.txt"
    assert safe_member_name("Übersicht/x.pdf", max_component=255, max_total=1024).startswith("Ü")


def test_members_are_written_as_numbered_files_only(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "mixed.zip",
        {
            "docs/a.md": b"# A\n\nalpha",
            "../../escape.txt": b"evil",
            "/tmp/prepshelf_unit_abs.txt": b"evil",
            "docs/a.md ": b"trailing space is a different name",
            "empty-dir/": b"",
        },
    )
    # A duplicate name, as some archivers write.
    with zipfile.ZipFile(archive, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("docs/a.md", b"second copy")
    result = _expand(tmp_path, archive)
    assert [m.name for m in result.members] == ["docs/a.md", "docs/a.md "]
    assert {(r.name, r.reason) for r in result.refused} == {
        ("../../escape.txt", "path traversal"),
        ("/tmp/prepshelf_unit_abs.txt", "absolute path"),
        ("docs/a.md", "duplicate name"),
    }
    assert _only_files(tmp_path / "out") == {"0", "1"}
    assert (tmp_path / "out" / "0").read_bytes() == b"# A\n\nalpha"
    assert not Path("/tmp/prepshelf_unit_abs.txt").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_symlinks_devices_and_fifos_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "special.tar"
    with tarfile.open(path, "w") as tf:
        for name, kind in [
            ("link", tarfile.SYMTYPE),
            ("hard", tarfile.LNKTYPE),
            ("dev", tarfile.CHRTYPE),
            ("fifo", tarfile.FIFOTYPE),
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        data = b"regular file text"
        info = tarfile.TarInfo("ok.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("zlink")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("ok.txt", "fine")
    result = _expand(tmp_path, path)
    assert [m.name for m in result.members] == ["ok.txt"]
    assert {r.name: r.reason for r in result.refused} == {
        "link": "symbolic link",
        "hard": "hard link",
        "dev": "device file",
        "fifo": "FIFO",
    }
    zresult = _expand(tmp_path, zpath, out="z")
    assert [m.name for m in zresult.members] == ["ok.txt"]
    assert [(r.name, r.reason) for r in zresult.refused] == [("zlink", "symbolic link")]


@needs_corpus
def test_dev_corpus_archives(tmp_path: Path) -> None:
    expected = {
        "pypdf-docs-bundle.zip": 5,
        "unstructured-samples.zip": 4,
        "office-docs.tar": 3,
    }
    for name, count in expected.items():
        dest = tmp_path / name
        dest.mkdir()
        result = expand_archive(CORPUS / name, name, dest=dest, limits=LIMITS)
        assert len(result.members) == count and result.refused == [], name
    bundle = _expand(tmp_path, CORPUS / "pypdf-docs-bundle.zip", out="b")
    assert "Übersicht/Seige_of_Vicksburg_Sample_OCR.pdf" in [m.name for m in bundle.members]
    traversal = _expand(tmp_path, CORPUS / "bad" / "zip-traversal.zip")
    assert traversal.members == [] and traversal.refused_total == 4
    assert _only_files(tmp_path / "out") == set()


@needs_corpus
def test_corpus_zip_bomb_fails_on_the_size_limit_without_inflating(tmp_path: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"past 1 GiB \(uncompressed-size limit"):
        _expand(tmp_path, CORPUS / "bad" / "zip-bomb-1gib.zip")
    assert _only_files(tmp_path / "out") == set()


def test_zip_bomb_ratio_limit(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros.txt": b"\0" * (64 * 1024 * 1024)})
    with pytest.raises(InvalidFileError, match=r"'zeros.txt' expands more than 200:1 \(compr"):
        _expand(tmp_path, archive)


def test_zip_with_a_lying_size_is_cut_at_the_declared_size(tmp_path: Path) -> None:
    # Declared small, really 64 MiB: zipfile stops at the declared size; the CRC then fails.
    archive = _zip(tmp_path / "liar.zip", {"zeros.txt": b"\0" * (64 * 1024 * 1024)})
    data = bytearray(archive.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")  # uncompressed size
    archive.write_bytes(bytes(data))
    result = _expand(tmp_path, archive)
    assert result.members == [] and "corrupt member" in result.refused[0].reason
    assert result.total_bytes == 0


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_compressed_tar_bomb_stops_at_the_size_limit(tmp_path: Path, compression: str) -> None:
    path = tmp_path / f"bomb.tar.{compression}"
    size = 48 * 1024 * 1024
    with tarfile.open(path, f"w:{compression}") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tf.addfile(info, io.BytesIO(b"\0" * size))
    small = ArchiveLimits(
        **{**LIMITS.__dict__, "max_total_bytes": 8 * 1024 * 1024, "max_ratio": 1e9}
    )
    with pytest.raises(InvalidFileError, match=r"past 8 MiB \(uncompressed-size limit"):
        _expand(tmp_path, path, small)
    with pytest.raises(InvalidFileError, match=r"stream expands more than 200:1 \(compression ra"):
        _expand(tmp_path, path)
    assert _only_files(tmp_path / "out") == set()


def test_single_compressed_file_is_one_member(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt.xz"
    path.write_bytes(lzma.compress(b"hello from xz"))
    result = _expand(tmp_path, path)
    assert [(m.name, m.size) for m in result.members] == [("notes.txt", 13)]


def test_member_count_limit(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(30)})
    few = ArchiveLimits(**{**LIMITS.__dict__, "max_members": 20})
    with pytest.raises(InvalidFileError, match=r"more than 20 members \(member count limit\)"):
        _expand(tmp_path, archive, few)
    # The tree's earlier members count too.
    with pytest.raises(InvalidFileError, match="member count limit"):
        _expand(tmp_path, archive, used_members=9_990)


def test_nested_archives_stop_at_the_depth_limit(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep.txt", "deep")
    archive = _zip(tmp_path / "outer.zip", {"inner.zip": inner.getvalue(), "a.txt": b"a"})
    result = _expand(tmp_path, archive, depth=1)
    assert [(m.name, m.is_archive) for m in result.members] == [
        ("inner.zip", True),
        ("a.txt", False),
    ]
    deepest = _expand(tmp_path, archive, out="d", depth=3)
    assert [m.name for m in deepest.members] == ["a.txt"]
    assert deepest.refused[0].reason == "archive nested more than 3 levels deep (nesting limit)"
    with pytest.raises(InvalidFileError, match="nesting limit"):
        _expand(tmp_path, archive, depth=4)


def test_outcome_messages() -> None:
    refused = [("../../etc/x", "path traversal"), ("/tmp/y", "absolute path")]
    assert outcome_message(failed=[], failed_total=0, refused=refused, refused_total=2) == (
        "all 2 members refused: '../../etc/x' (path traversal), '/tmp/y' (absolute path)"
    )
    message = outcome_message(
        failed=[("a.pdf", "parsing: encrypted PDF")],
        failed_total=1,
        refused=refused,
        refused_total=7,
    )
    assert message.startswith("no member could be ingested: 1 failed: 'a.pdf' (parsing: encr")
    assert message.endswith("(absolute path), and 5 more")


def test_expansion_runs_in_the_sandbox(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a.txt": b"alpha", "b/c.md": b"# c"})
    dest = tmp_path / "staged"
    dest.mkdir()
    target = functools.partial(expand_archive, dest=dest, limits=LIMITS)
    result = run_in_subprocess(
        target, archive, "ok.zip", timeout_s=60, memory_limit_bytes=1024 * 1024 * 1024
    )
    assert isinstance(result, Expansion)
    assert [m.name for m in result.members] == ["a.txt", "b/c.md"]
    assert sorted(os.listdir(dest)) == ["0", "1"]
