"""Atomic outputs: write under a temporary name beside the target, then rename into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temp_beside(path: str | os.PathLike, suffix: str = ".part") -> Path:
    """Create an empty temporary file next to ``path`` (same folder, so ``os.replace`` is atomic),
    with the permissions a plain ``open`` would have given it (``mkstemp`` alone makes it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)
