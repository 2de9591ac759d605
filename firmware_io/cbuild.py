"""Compiling the project's small C sources into cached shared libraries (no build step at install).

``build_shared(name, sources, cflags)`` compiles ``sources`` into ``<cache>/<name>-<hash>.so``; the
hash covers the sources, the compiler and the flags, so an edited source rebuilds and an unchanged
one is reused. The cache is ``$SPIKE_EDGE_CACHE/<name>``, else ``$XDG_CACHE_HOME/spike-edge/<name>``
(``~/.cache/...``). The library is written under a temporary name and renamed into place, so
concurrent builds never load a half-written file. The compiler is ``$CC`` or the first of ``cc``,
``gcc``, ``clang`` on ``PATH``; none raises ``CompilerNotFoundError``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from firmware_io.atomic import atomic_path


class CompilerNotFoundError(RuntimeError):
    """No C compiler on this machine."""


def find_c_compiler(cc: str | None = None) -> list[str]:
    """The compiler command (``cc`` argument, ``$CC``, or ``cc``/``gcc``/``clang`` on PATH)."""
    candidates = [cc] if cc else ([os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"])
    for candidate in candidates:
        argv = shlex.split(candidate)
        if argv and shutil.which(argv[0]):
            return argv
    raise CompilerNotFoundError(f"no C compiler found (tried {', '.join(candidates)}); install gcc or clang, or set CC")


def cache_dir(name: str, override: str | os.PathLike | None = None) -> Path:
    if override is not None:
        return Path(override)
    if os.environ.get("SPIKE_EDGE_CACHE"):
        return Path(os.environ["SPIKE_EDGE_CACHE"]) / name
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spike-edge" / name


def build_shared(name: str, sources: Sequence[Path], cflags: Sequence[str], *, include: Sequence[Path] = (),
                 cache: str | os.PathLike | None = None, cc: str | None = None) -> Path:
    """Compile (or reuse) ``sources`` into a shared library; returns its path."""
    compiler = find_c_compiler(cc)
    digest = hashlib.sha256()
    for part in (*(p.read_bytes() for p in (*sources, *include)), " ".join(compiler).encode(), " ".join(cflags).encode()):
        digest.update(part)
        digest.update(b"\0")
    folder = cache_dir(name, cache)
    target = folder / f"{name}-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    include_flags = [flag for path in {p.parent for p in include} for flag in ("-I", str(path))]
    with atomic_path(target, suffix=".so") as tmp:
        argv = [*compiler, *cflags, "-shared", "-fPIC", *include_flags, "-o", str(tmp), *map(str, sources)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"building {name} failed ({shlex.join(argv)}):\n{result.stderr}")
    return target
