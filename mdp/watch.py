"""Cheap change detection for sensors: a fingerprint of a source's files from stat() alone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mdp.config import SourceConfig


def source_fingerprint(source: SourceConfig) -> str:
    """Changes when a file under the root is added, removed, resized or touched. Reads no file contents."""
    root = Path(source.root)
    if not root.exists():
        return "missing"
    digest = hashlib.sha256()
    entries: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if not any(Path(rel).match(p) or _glob_match(rel, p) for p in source.include):
                continue
            if any(_glob_match(rel, p) for p in source.exclude):
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            entries.append((rel, st.st_size, st.st_mtime_ns))
    for rel, size, mtime in sorted(entries):
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()[:16]


def _glob_match(rel: str, pattern: str) -> bool:
    from fnmatch import fnmatch

    if pattern.startswith("**/"):
        return fnmatch(rel, pattern[3:]) or fnmatch(rel, pattern)
    return fnmatch(rel, pattern)
