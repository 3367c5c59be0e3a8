"""Source discovery on real folders: globs, hidden files, symlinks, limits, determinism."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mdp.config import ParsingConfig, SourceConfig
from mdp.sources import SourceRootError, discover, glob_match


def make_tree(root: Path) -> None:
    for rel, text in {
        "a.md": "# A\n",
        "b.txt": "bee\n",
        "docs/c.md": "# C\n",
        "docs/deep/d.jsonl": '{"text": "d"}\n',
        "drafts/e.md": "# E\n",
        ".hidden.md": "# hidden\n",
        ".git/config.txt": "hidden folder\n",
        "docs/.cache/f.md": "# hidden folder inside\n",
        "data.xyz": "unknown format\n",
        "README": "no extension\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def reasons(found) -> dict[str, str]:
    return {Path(r.path).name: r.reason for r in found.refused}


def test_walk_is_sorted_hashed_and_skips_hidden(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found = discover(SourceConfig(name="s", root=tmp_path), ParsingConfig())
    rels = [f.relpath for f in found.files]
    assert rels == ["a.md", "b.txt", "docs/c.md", "docs/deep/d.jsonl", "drafts/e.md"]
    first = found.files[0]
    assert first.content_hash == hashlib.sha256(b"# A\n").hexdigest()
    assert first.path == str(tmp_path.resolve() / "a.md") and first.format == "markdown"
    assert first.size_bytes == 4 and first.mtime_ns > 0
    assert [f.format for f in found.files] == ["markdown", "text", "markdown", "jsonl", "markdown"]
    refused = reasons(found)
    assert refused == {
        "README": "unsupported format (no file extension): no parser registered; see docs/plugins.md",
        "data.xyz": "unsupported format '.xyz': no parser registered; see docs/plugins.md",
    }
    assert all(r.stage == "discover" and r.source == "s" for r in found.refused)
    again = discover(SourceConfig(name="s", root=tmp_path), ParsingConfig())
    assert again.files == found.files


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    make_tree(tmp_path)
    source = SourceConfig(name="s", root=tmp_path, include=["*.md"], exclude=["drafts/**"])
    assert [f.relpath for f in discover(source).files] == ["a.md", "docs/c.md"]
    source = SourceConfig(name="s", root=tmp_path, include=["docs/**/*.jsonl", "b.txt"])
    found = discover(source)
    assert [f.relpath for f in found.files] == ["b.txt", "docs/deep/d.jsonl"] and found.refused == []


def test_glob_semantics() -> None:
    assert glob_match("a.md", "**/*.md") and glob_match("x/y/a.md", "**/*.md")
    assert glob_match("x/y/a.md", "*.md")  # no slash: any depth, like .gitignore
    assert not glob_match("x/a.md", "x/*.txt") and glob_match("x/a.md", "x/*.md")
    assert not glob_match("x/y/a.md", "x/*.md") and glob_match("x/y/a.md", "x/**")
    assert (
        glob_match("x/y/a.md", "x/")
        and glob_match("r1.md", "r[0-9].md")
        and not glob_match("ra.md", "r[0-9].md")
    )
    assert glob_match("a.md", "?.md") and not glob_match("ab.md", "?.md")


def test_symlinks_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.md"
    outside.write_text("# secret outside the root\n")
    (root / "inside.md").write_text("# inside\n")
    (root / "escape.md").symlink_to(outside)
    (root / "alias.md").symlink_to(root / "inside.md")
    (root / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    (root / "dangling.md").symlink_to(tmp_path / "missing.md")
    found = discover(SourceConfig(name="s", root=root))
    assert [f.relpath for f in found.files] == ["inside.md"]
    refused = reasons(found)
    assert refused["escape.md"].startswith("path escapes source root")
    assert refused["linkdir"].startswith("path escapes source root")
    assert refused["alias.md"].startswith("symlink: not followed")
    assert refused["dangling.md"].startswith("broken symlink")


def test_too_large_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"x" * 300_000)
    (tmp_path / "small.txt").write_text("small")
    os.mkfifo(tmp_path / "pipe.txt")  # opening it would block forever
    found = discover(SourceConfig(name="s", root=tmp_path), ParsingConfig(max_file_mb=0.1))
    assert [f.relpath for f in found.files] == ["small.txt"]
    refused = reasons(found)
    assert refused["big.txt"] == "too large: 0.3 MB > limit 0.1 MB; raise [parsing] max_file_mb"
    assert refused["pipe.txt"].startswith("not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permissions cannot make one unreadable")
def test_unreadable_file(tmp_path: Path) -> None:
    locked = tmp_path / "locked.txt"
    locked.write_text("private")
    locked.chmod(0)
    try:
        found = discover(SourceConfig(name="s", root=tmp_path))
        assert reasons(found)["locked.txt"].startswith("unreadable")
    finally:
        locked.chmod(0o600)


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceRootError) as info:
        discover(SourceConfig(name="docs", root=tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value) and "mdp.toml" in str(info.value)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceRootError, match="not a folder"):
        discover(SourceConfig(name="docs", root=tmp_path / "file.txt"))
