"""Files: written so that a crash never leaves half of one (temporary name, fsync, rename); config files read with one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, private: bool = False) -> Path:
    """Write ``text``; ``private`` files (a password inside) are readable by their owner only (0600)."""
    with atomic_path(path) as tmp:
        # created with the final mode, so the secret is never readable by others, not even briefly
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if private:
            os.chmod(tmp, 0o600)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def read_mapping(path: str | os.PathLike, what: str, json_too: bool = False, expected: str = "a mapping of fields") -> dict:
    """The mapping in a YAML (or, with ``json_too``, JSON) config file; one-line DrxError otherwise.

    ``what`` names the file in the message (``"db file"``, ``"grid file"``...).
    """
    from ruamel.yaml import YAML, YAMLError

    from drx_workflows.errors import DrxError

    p = Path(path).expanduser()
    if not p.exists():
        raise DrxError(f"{what} {p} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DrxError(f"{what} {p}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = json.loads(text) if json_too else None
    except ValueError:
        doc = None
    if doc is None:
        try:
            doc = YAML(typ="safe").load(text)
        except YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            how = "parses neither as JSON nor as YAML" if json_too else "does not parse as YAML"
            raise DrxError(f"{what} {p} {how}{where}") from None
    if not isinstance(doc, dict):
        raise DrxError(f"{what} {p}: expected {expected}")
    return doc
