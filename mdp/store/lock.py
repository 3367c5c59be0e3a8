"""The writer lock: one writer per store at a time (``apply``, ``put_cached``, baselines,
indexes and ``optimize`` hold it), with an error that names the lock file when it times out."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from mdp.store.lance import is_local, local_path

LOCK_NAME = ".mdp-writer.lock"


class StoreLockedError(RuntimeError):
    """Another writer holds the store's lock."""


class ReadOnlyStoreError(RuntimeError):
    """A write was attempted on a store opened with ``read_only=True``."""


def lock_path_for(uri: str) -> Path:
    """The lock of the store at ``uri``: a file in the store folder or, for an object-store URI,
    a local file keyed by the URI (so it serialises the writers of one machine only)."""
    if is_local(uri):
        return local_path(uri) / LOCK_NAME
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mdp-store-{digest}.lock"


class WriterLock:
    """The store's writer lock; ``with lock.held():`` holds it (a fresh file handle each time, so
    two threads of one process exclude each other as two processes do)."""

    def __init__(self, uri: str, *, read_only: bool, timeout_s: float):
        self.uri = uri
        self.path = lock_path_for(uri)
        self.read_only = read_only
        self.timeout_s = timeout_s

    @contextmanager
    def held(self) -> Iterator[None]:
        if self.read_only:
            raise ReadOnlyStoreError(f"store {self.uri} was opened read-only")
        lock = FileLock(str(self.path), timeout=self.timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise StoreLockedError(
                f"store is locked by another writer: {self.path}; "
                "wait or remove it if no mdp process is running"
            ) from None
        try:
            yield
        finally:
            lock.release()
