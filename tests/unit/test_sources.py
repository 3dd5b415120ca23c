"""Sync sources: only under the operator's roots; links and hidden names never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prepshelf.errors import InvalidRequestError
from prepshelf.store.sources import FolderSource, SourceError, resolve_source


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("alpha")
    (root / "docs" / "sub" / "b.txt").write_text("beta")
    (root / "docs" / ".hidden.md").write_text("no")
    (root / "docs" / ".git").mkdir()
    (root / "docs" / ".git" / "config").write_text("no")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    os.symlink(secret, root / "docs" / "link.txt")
    os.symlink(tmp_path, root / "docs" / "up")
    return root


def test_folder_roots(tree: Path, tmp_path: Path) -> None:
    roots = [str(tree)]
    assert resolve_source(str(tree / "docs"), roots) == str((tree / "docs").resolve())
    for bad in (
        str(tmp_path),
        str(tree / "docs" / ".." / ".."),
        str(tree / "docs" / "up"),  # a link out of the root
        "docs",  # relative
        str(tree) + "-other",  # a sibling sharing the prefix
        str(tree / "missing"),
    ):
        with pytest.raises(InvalidRequestError):
            resolve_source(bad, roots)
    with pytest.raises(InvalidRequestError, match="PREPSHELF_SYNC_ROOTS"):
        resolve_source(str(tree), [])


def test_s3_roots() -> None:
    roots = ["s3://corp/team", "s3://open"]
    assert resolve_source("s3://corp/team/docs/", roots) == "s3://corp/team/docs"
    assert resolve_source("s3://open/anything", roots) == "s3://open/anything"
    for bad in (
        "s3://corp/teammates",
        "s3://corp",
        "s3://corp/team/../hr",
        "s3://other/x",
        "s3://",
    ):
        with pytest.raises(InvalidRequestError):
            resolve_source(bad, roots)


def test_listing_skips_links_and_hidden_names(tree: Path) -> None:
    source = FolderSource(str((tree / "docs").resolve()))
    entries = {e.path: e for e in source.entries()}
    assert set(entries) == {"a.md", "sub/b.txt"}
    assert entries["a.md"].size == 5 and entries["a.md"].stamp.startswith("5:")
    with source.open("sub/b.txt") as fh:
        assert fh.read() == b"beta"


def test_open_refuses_a_link_swapped_in(tree: Path, tmp_path: Path) -> None:
    source = FolderSource(str((tree / "docs").resolve()))
    (tree / "docs" / "a.md").unlink()
    os.symlink(tmp_path / "secret.txt", tree / "docs" / "a.md")
    with pytest.raises(SourceError), source.open("a.md"):
        pass
    with pytest.raises(SourceError), source.open("up/secret.txt"):
        pass
