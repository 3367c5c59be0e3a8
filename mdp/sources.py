"""Source discovery: the files under a configured root that mdp will parse.

Deterministic (sorted by relative path), content-addressed (streaming sha256) and
confined to the root: symlinks are never followed and nothing outside the root is
opened (files are opened from the root down, see mdp/fileaccess.py). Each file's
identity (device, inode, size, mtime) is recorded beside its hash, so the parse
worker can refuse a file that changed in between. Files that cannot be taken are
*refused* with a readable reason (a ``QuarantineRecord`` with ``stage="discover"``),
never skipped silently. Hidden files and folders (names starting with a dot) are
ignored, as are files the include/exclude globs leave out.

Globs are matched against the path relative to the root, with ``/`` separators:
``*`` and ``?`` stay within one folder, ``**`` spans folders (``**/`` also matches no
folder) and ``[...]`` is a character class. A pattern without ``/`` matches the file
name at any depth, like ``.gitignore``: ``*.pdf`` takes every PDF.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mdp.config import ParsingConfig, SourceConfig
from mdp.fileaccess import FileIdentity, UnsafePathError, hash_descriptor, open_under_root
from mdp.parsers import format_for_path, get_parser
from mdp.schemas import QuarantineRecord, SourceFile


class SourceRootError(FileNotFoundError):
    """The configured root is missing or not a folder."""


@dataclass
class Discovery:
    files: list[SourceFile] = field(default_factory=list)
    refused: list[QuarantineRecord] = field(default_factory=list)


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob (see module doc) to a regex over a relative POSIX path."""
    pattern = pattern.strip().removeprefix("./")
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    if pattern.endswith("/"):
        pattern += "**"
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(relpath: str, pattern: str) -> bool:
    return glob_regex(pattern).match(relpath) is not None


def _selected(relpath: str, include: list[str], exclude: list[str]) -> bool:
    return any(glob_match(relpath, p) for p in include) and not any(glob_match(relpath, p) for p in exclude)


def _hash_file(root: Path, relpath: str) -> tuple[str, FileIdentity]:
    """sha256 of a regular file under ``root`` and the identity of the file those bytes came from,
    opened from the root down without following symlinks."""
    fd = open_under_root(root, relpath)
    try:
        identity = FileIdentity.of(os.fstat(fd))
        return hash_descriptor(fd), identity
    finally:
        os.close(fd)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _walk(root: Path) -> tuple[list[tuple[Path, os.stat_result]], list[tuple[Path, OSError]]]:
    """Every non-hidden entry under ``root`` (files, symlinks, special files), not following links,
    and the folders that could not be listed."""
    found: list[tuple[Path, os.stat_result]] = []
    failed: list[tuple[Path, OSError]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            failed.append((folder, exc))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            path = Path(entry.path)
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)
            else:
                found.append((path, st))
    return found, failed


def discover(source: SourceConfig, parsing: ParsingConfig | None = None) -> Discovery:
    """Find the files of ``source`` that mdp can parse, and refuse the rest with a reason."""
    parsing = parsing or ParsingConfig()
    root_given = Path(os.path.expanduser(str(source.root)))
    if not root_given.exists():
        raise SourceRootError(
            f"source {source.name!r}: root {root_given} does not exist — create it, or fix `root` "
            f"of the [[sources]] entry named {source.name!r} in mdp.toml"
        )
    if not root_given.is_dir():
        raise SourceRootError(
            f"source {source.name!r}: root {root_given} is not a folder — point `root` at a folder"
        )
    root = root_given.resolve()
    limit_bytes = parsing.max_file_mb * 1024 * 1024
    result = Discovery()

    def refuse(path: Path, reason: str, parser: str = "", fmt: str = "") -> None:
        result.refused.append(
            QuarantineRecord(
                source=source.name,
                path=str(path),
                relpath=path.relative_to(root).as_posix(),
                reason=reason,
                stage="discover",
                parser=parser,
                format=fmt,
            )
        )

    entries, failed = _walk(root)
    for folder, exc in failed:
        refuse(folder, f"unreadable folder: {exc.strerror or exc}; its files were not discovered")
    for path, st in sorted(entries, key=lambda item: item[0].relative_to(root).as_posix()):
        relpath = path.relative_to(root).as_posix()
        if not _selected(relpath, source.include, source.exclude):
            continue
        if stat.S_ISLNK(st.st_mode):
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                refuse(path, "broken symlink: its target does not exist (symlinks are not followed)")
                continue
            if not _inside(target, root):
                refuse(path, f"path escapes source root: symlink to {target} (symlinks are not followed)")
            else:
                refuse(
                    path, "symlink: not followed; its target inside the root is discovered under its own path"
                )
            continue
        if not stat.S_ISREG(st.st_mode):
            refuse(path, "not a regular file (device, socket or pipe)")
            continue
        if not _inside(path.resolve(), root):  # a folder on the way was swapped for a link
            refuse(path, "path escapes source root")
            continue
        fmt = format_for_path(path)
        if fmt is None:
            kind = f"'{path.suffix.lower()}'" if path.suffix else "(no file extension)"
            refuse(path, f"unsupported format {kind}: no parser registered; see docs/plugins.md")
            continue
        parser_name = get_parser(fmt).name
        if st.st_size > limit_bytes:
            size_mb = st.st_size / (1024 * 1024)
            refuse(
                path,
                f"too large: {size_mb:.1f} MB > limit {parsing.max_file_mb:g} MB; "
                "raise [parsing] max_file_mb",
                parser_name,
                fmt,
            )
            continue
        try:
            digest, identity = _hash_file(root, relpath)
        except UnsafePathError as exc:
            reason = f"path escapes source root: {exc.strerror} (symlinks are not followed)"
            refuse(path, reason, parser_name, fmt)
            continue
        except OSError as exc:
            refuse(path, f"unreadable: {exc.strerror or exc}", parser_name, fmt)
            continue
        result.files.append(
            SourceFile(
                source=source.name,
                path=str(path),
                relpath=relpath,
                format=fmt,
                size_bytes=identity.size,
                content_hash=digest,
                mtime_ns=identity.mtime_ns,
                device=identity.device,
                inode=identity.inode,
            )
        )
    return result
