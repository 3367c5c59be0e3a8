"""Open files under a source root without ever leaving it.

Discovery and the parse workers open a file the same way: from a descriptor of the source root,
one folder at a time with ``O_NOFOLLOW | O_DIRECTORY``, and the file itself with ``O_NOFOLLOW``.
A symlink anywhere below the root (put there before or after discovery) makes the open fail
instead of being followed. Discovery records the opened file's identity (device, inode, size,
modification time) next to the hash of the bytes it read through that descriptor; a worker opens
the file again, compares the identity, and hands the parser a path that names its verified
descriptor (``/proc/<pid>/fd/<n>``), so a swap after the check cannot change what is read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

HASH_BLOCK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not block the open
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
RERUN_FIX = "re-run `mdp ingest` to pick up its current state"


class UnsafePathError(OSError):
    """The file cannot be opened without following a symlink or leaving the root; the message says why."""


class FileChangedError(OSError):
    """The file opened now is not the one discovery hashed; the message says what changed."""


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _why(exc: OSError, last: bool) -> str:
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return "it is a symbolic link" if last else "a folder on its path is a symbolic link"
    if exc.errno == errno.ENOTDIR:
        return "a folder on its path is a symbolic link or not a folder"
    if exc.errno == errno.ENOENT:
        return "it no longer exists"
    return exc.strerror or str(exc)


def open_under_root(root: Path, relpath: str) -> int:
    """A read-only descriptor of ``root/relpath``, opened without following any symlink at or below
    ``root``; raises :class:`UnsafePathError` (or ``OSError`` for plain I/O trouble) naming why not."""
    parts = PurePosixPath(relpath).parts
    if not parts or any(part in ("", ".", "..") for part in parts) or PurePosixPath(relpath).is_absolute():
        raise UnsafePathError(errno.EINVAL, f"{relpath!r} is not a path inside the source root")
    folder_flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
    try:
        current = os.open(root, folder_flags)
    except OSError as exc:
        raise UnsafePathError(exc.errno, f"source root {root}: {_why(exc, last=False)}") from None
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = (os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC) if last else folder_flags
            try:
                opened = os.open(part, flags, dir_fd=current)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.ENOENT):
                    raise UnsafePathError(exc.errno, _why(exc, last)) from None
                raise
            os.close(current)
            current = opened
        fd, current = current, -1
    finally:
        if current >= 0:
            os.close(current)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(errno.EINVAL, "it is not a regular file")
    return fd


def hash_descriptor(fd: int) -> str:
    """sha256 of everything readable from ``fd`` (read from its start; the offset is left at the end)."""
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, HASH_BLOCK):
        digest.update(block)
    return digest.hexdigest()


def descriptor_path(fd: int) -> Path:
    """A path that opens the file behind ``fd`` (not a name in a folder), valid while ``fd`` is open.

    ``/proc/<pid>/fd/<n>`` rather than ``/proc/self/...``, so tools a parser runs as subprocesses
    (poppler, tesseract) open the same file.
    """
    proc = Path(f"/proc/{os.getpid()}/fd")
    if proc.is_dir():
        return proc / str(fd)
    return Path(f"/dev/fd/{fd}")  # macOS, BSD


def _difference(expected: FileIdentity, found: FileIdentity) -> str | None:
    if expected.inode and (expected.device, expected.inode) != (found.device, found.inode):
        return "it was replaced by another file"
    if expected.size != found.size:
        verb = "grew" if found.size > expected.size else "shrank"
        return f"it {verb} from {expected.size} to {found.size} bytes"
    if expected.mtime_ns and expected.mtime_ns != found.mtime_ns:
        return "it was modified"
    return None


def changed_reason(detail: str) -> str:
    return f"changed between discovery and parsing: {detail}; nothing of it was read — {RERUN_FIX}"


@contextlib.contextmanager
def verified_file(root: Path, relpath: str, expected: FileIdentity) -> Iterator[Path]:
    """Open ``root/relpath`` safely, check it is the file discovery saw, and yield a path naming the
    open descriptor. Raises :class:`FileChangedError` with a readable reason when it is not."""
    try:
        fd = open_under_root(root, relpath)
    except UnsafePathError as exc:
        detail = exc.strerror or str(exc)
        if "symbolic link" in detail:
            detail = detail.replace("is a symbolic", "is now a symbolic") + " (symlinks are not followed)"
        raise FileChangedError(exc.errno, changed_reason(detail)) from None
    try:
        difference = _difference(expected, FileIdentity.of(os.fstat(fd)))
        if difference:
            raise FileChangedError(errno.ESTALE, changed_reason(difference))
        yield descriptor_path(fd)
    finally:
        os.close(fd)
