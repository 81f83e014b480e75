"""The embedded store file: FireWorks' mongomock-persistence JSON, locked by one process, saved atomically with a backup."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from drx_workflows.errors import (
    DrxError,
    StoreCorruptError,
    StoreLockedError,
)
from drx_workflows.fileio import atomic_write_text
from drx_workflows.store.config import ENV_STORE_WAIT


class EmbeddedFile:
    """Lock, load and atomically save one mongomock-persistence store file."""

    def __init__(self, path: Path, wait: float = 0.0):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.backup_path = path.with_name(path.name + ".bak")
        self._lock_fd: int | None = None
        self._server_store = None
        self._owner_pid = os.getpid()
        self._acquire(wait)
        self._ensure_exists()

    def _acquire(self, wait: float) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DrxError(f"cannot create the embedded store at {self.path}: {exc.strerror}") from exc
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = read_holder(self.lock_path)
                    os.close(fd)
                    waited = f" after waiting {wait:g} s" if wait > 0 else ""
                    raise StoreLockedError(
                        f"embedded store {self.path} is in use by {holder}{waited}; "
                        f"only one process may open it at a time: wait for that process to finish, "
                        f"set {ENV_STORE_WAIT}=SECONDS to wait for it, or use a MongoDB server (--launchpad)"
                    ) from None
                time.sleep(0.2)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def _ensure_exists(self) -> None:
        if not self.path.exists():
            atomic_write_text(self.path, "{}")

    def make_client(self):
        """The process's single mongomock client, loaded from the file."""
        os.environ["MONGOMOCK_SERVERSTORE_FILE"] = str(self.path)
        import mongomock.gridfs
        import mongomock_persistence

        # LaunchPad builds a GridFS on its database; mongomock needs this to provide one.
        mongomock.gridfs.enable_gridfs_integration()
        try:
            client = mongomock_persistence.MongoClient()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            hint = (
                f"; the previous good copy is {self.backup_path} (restore it with: "
                f"cp {self.backup_path} {self.path})"
                if self.backup_path.exists()
                else ""
            )
            raise StoreCorruptError(f"embedded store {self.path} is corrupted ({type(exc).__name__}){hint}") from exc
        server_store = client._store
        # mongomock-persistence writes in place at exit; a crash mid-write would leave half a file.
        server_store._finalizer.detach()
        self._server_store = server_store
        atexit.register(self._save_at_exit)
        return client

    def save(self) -> None:
        """Write the whole store: temporary file, fsync, keep the previous copy, rename."""
        if self._server_store is None or os.getpid() != self._owner_pid:
            return  # a forked child must never overwrite its parent's store
        from bson import json_util

        text = json_util.dumps(self._server_store.to_dict())
        if self.path.exists():
            try:
                if self.backup_path.exists():
                    self.backup_path.unlink()
                os.link(self.path, self.backup_path)
            except OSError:
                pass  # a backup is a courtesy; the atomic rename below is what matters
        atomic_write_text(self.path, text)

    def _save_at_exit(self) -> None:
        try:
            self.save()
        finally:
            self.release()

    def close(self) -> None:
        atexit.unregister(self._save_at_exit)
        self._save_at_exit()

    def release(self) -> None:
        if self._lock_fd is not None and os.getpid() == self._owner_pid:
            try:
                os.ftruncate(self._lock_fd, 0)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None


def read_holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, since {info.get('since')})"
