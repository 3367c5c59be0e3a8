"""No byte from outside a source root: files are opened by the worker without following symlinks
and checked against what discovery hashed (issue 12, defect 4).

A file replaced by a symlink to /etc/passwd between discovery and parsing used to be indexed as
the file, and its content stayed in older index versions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdp.config import MdpConfig, SourceConfig
from mdp.isolation import process_files
from mdp.sources import discover

SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT 4b1d"
CHANGED = "changed between discovery and parsing"


def _outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "victim.txt").write_text(f"{SECRET}\n" * 20)
    (folder / "sub" / "inner.txt").write_text(f"{SECRET}\n" * 20)
    return folder


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "victim.txt").write_text("An ordinary note about gardening and tomatoes.\n")
    (root / "sub" / "inner.txt").write_text("Another ordinary note, this one about bread.\n")
    (root / "keep.txt").write_text("A file nobody touches, about glaciers.\n")
    (root / "grow.txt").write_text("A file that grows after discovery.\n")
    return root


def _swap(root: Path, outside: Path) -> None:
    """What an attacker (or a sync tool) does between discovery and parsing."""
    (root / "victim.txt").unlink()
    (root / "victim.txt").symlink_to(outside / "victim.txt")
    (root / "sub" / "inner.txt").rename(root / "inner-moved.txt")
    (root / "sub").rename(root / "sub-old")
    (root / "sub").symlink_to(outside / "sub", target_is_directory=True)
    with (root / "grow.txt").open("a") as fh:
        fh.write("More text appended after discovery.\n")


def _texts(outcomes) -> str:
    return "\n".join(c.text for o in outcomes for d in o.documents for c in d.chunks)


def test_swaps_after_discovery_are_quarantined_and_nothing_outside_is_read(tmp_path: Path) -> None:
    outside, root = _outside(tmp_path), _root(tmp_path)
    source = SourceConfig(name="safe", root=root)
    config = MdpConfig(sources=[source])
    config.parsing.workers = 1
    found = discover(source, config.parsing)
    assert sorted(f.relpath for f in found.files) == ["grow.txt", "keep.txt", "sub/inner.txt", "victim.txt"]
    _swap(root, outside)

    outcomes = {o.file.relpath: o for o in process_files(found.files, config)}
    assert SECRET not in _texts(outcomes.values())
    assert outcomes["keep.txt"].documents and not outcomes["keep.txt"].quarantine
    for relpath in ("victim.txt", "sub/inner.txt", "grow.txt"):
        outcome = outcomes[relpath]
        assert not outcome.documents, relpath
        (record,) = outcome.quarantine
        assert CHANGED in record.reason and "re-run" in record.reason, record.reason
        assert record.relpath == relpath and SECRET not in record.reason
    assert "symbolic link" in outcomes["victim.txt"].quarantine[0].reason
    assert (
        "grew" in outcomes["grow.txt"].quarantine[0].reason
        or "modified" in outcomes["grow.txt"].quarantine[0].reason
    )


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="needs /etc/passwd")
def test_symlink_to_etc_passwd_never_reaches_the_store(tmp_path: Path, encoder) -> None:
    """The issue's case through the real stages, then every index version is searched."""
    from mdp.stages import discover_stage, embed_stage, index_stage, parse_stage, validate_stage
    from mdp.store import VectorStore

    passwd_lines = [line for line in Path("/etc/passwd").read_text().splitlines() if len(line) > 12]
    assert passwd_lines
    root = tmp_path / "root"
    root.mkdir()
    (root / "victim.txt").write_text("A harmless note about the weather in spring.\n")
    (root / "other.md").write_text("# Other\n\nA second note, about rivers and lakes.\n")
    source = SourceConfig(name="src", root=root)
    config = MdpConfig(sources=[source])
    config.parsing.workers = 1
    store = VectorStore(str(tmp_path / "store"))

    plan = discover_stage(config, source, store)
    (root / "victim.txt").unlink()
    (root / "victim.txt").symlink_to("/etc/passwd")
    parsed = parse_stage(config, plan)
    embedded = embed_stage(validate_stage(parsed, config.chunking), encoder, store)
    index_stage(store, plan, embedded, "run-1")

    (record,) = [q.record for q in parsed.quarantine]
    assert record.document_id == "src:victim.txt" and CHANGED in record.reason
    # the next run sees the symlink at discovery and refuses it there
    plan = discover_stage(config, source, store)
    assert [r.relpath for r in plan.refused] == ["victim.txt"]

    everything = []
    for info in store.versions():
        everything += store.chunks_frame(version=info.version)["text"].tolist()
    everything += [str(v) for v in store.manifest_table().to_pylist()]
    blob = "\n".join(everything)
    assert "other.md" in blob  # the search looks at real content
    assert not [line for line in passwd_lines if line in blob]
    assert "root:x:0:0" not in blob


def test_files_are_read_through_the_verified_descriptor(tmp_path: Path) -> None:
    """A parser receives a path that names the verified open file, not the name in the folder."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("The first version of this file talks about owls.\n")
    source = SourceConfig(name="fd", root=root)
    found = discover(source)
    (file,) = found.files
    assert file.inode == os.stat(root / "a.txt").st_ino and file.device == os.stat(root / "a.txt").st_dev
    config = MdpConfig(sources=[source])
    config.parsing.workers = 1
    (outcome,) = process_files(found.files, config)
    assert "owls" in _texts([outcome])
