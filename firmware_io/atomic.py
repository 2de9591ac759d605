"""The project's one atomic writer: every output file or directory is built under a hidden temporary
name beside its target, then renamed into place, so a reader never sees a half-written output.

- ``PendingFile(target, suffix)``: the primitive. Creates a uniquely named hidden temporary file in
  the target's folder (``.NAME.<random><suffix>``, created exclusively; same folder, so the rename
  is atomic) with the permissions a plain ``open`` would give (0666 less the umask). ``commit()``
  fsyncs it, renames it over the target and fsyncs the folder; ``abort()`` removes it. Streaming
  writers (``DatWriter``, ``FrameSink``, ``VideoWriter``) hold one for their lifetime.
- ``atomic_path(target, suffix)``: the same as a context manager yielding the temporary path;
  leaving the block normally commits, leaving it by any exception (``KeyboardInterrupt``,
  ``SystemExit`` and ``Terminated`` included) removes the temporary file and leaves an existing
  target untouched. ``write_bytes_atomic`` / ``write_text_atomic`` are the one-call forms.
- ``atomic_dir(target)``: the same for a directory (engine directories): a hidden temporary
  directory, renamed into place on success (an existing target directory is replaced), removed
  with its contents on failure.
- ``sigterm_as_exception()``: while active, SIGTERM raises ``Terminated`` in the main thread, so a
  command killed by a service manager unwinds through the ``with`` blocks above and cleans up.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_SUFFIX = ".part"


class Terminated(BaseException):
    """SIGTERM, raised by ``sigterm_as_exception``. A ``BaseException`` (like ``KeyboardInterrupt``)
    so that handlers of ordinary errors do not swallow it."""


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a file system that cannot sync this kind of file
            raise
    finally:
        os.close(fd)


def _create_beside(target: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """A new hidden name ``.NAME.<random><suffix>`` in ``target``'s folder, created exclusively by ``create``."""
    for _ in range(100):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {target}")


def _create_file(path: Path) -> None:
    # mode 0666 less the umask (and any default ACL), as a plain open gives; mkstemp would give 0600
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))


def _create_dir(path: Path) -> None:
    os.mkdir(path, 0o777)


class PendingFile:
    """A temporary file beside ``target`` that becomes ``target`` on ``commit()`` or vanishes on ``abort()``.

    ``path`` is the temporary file (created empty); write it by name or through your own handle,
    close that handle, then commit. ``suffix`` is the temporary name's ending (keep the target's
    suffix for libraries that choose the format from it). ``fsync=False`` skips the two fsyncs
    (the rename is still atomic for readers; only durability across a power cut is lost).
    """

    def __init__(self, target: str | os.PathLike, suffix: str = DEFAULT_SUFFIX, *, fsync: bool = True) -> None:
        self.target = Path(target)
        if not self.target.name:
            raise ValueError(f"atomic output needs a file name, got {str(target)!r}")
        if self.target.is_dir():
            raise IsADirectoryError(f"{self.target} is a directory; an atomic file cannot replace it")
        self.fsync = fsync
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = _create_beside(self.target, suffix, _create_file)
        self.done = False

    def commit(self) -> Path:
        """Move the temporary file into place (fsynced first); returns the target."""
        if self.done:
            raise RuntimeError(f"{self.target}: the temporary file was already committed or aborted")
        try:
            if self.fsync:
                _fsync_path(self.path)
            os.replace(self.path, self.target)
        except BaseException:
            self.abort()
            raise
        self.done = True
        if self.fsync:
            _fsync_path(self.target.parent)
        return self.target

    def abort(self) -> None:
        """Remove the temporary file; the target (if any) is left as it was. Safe to call twice."""
        self.done = True
        self.path.unlink(missing_ok=True)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Abort if the block raises: for a streaming writer's own set-up and tear-down around the file."""
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> "PendingFile":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = DEFAULT_SUFFIX, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``, on any exception it is removed."""
    with PendingFile(target, suffix, fsync=fsync) as pending:
        yield pending.path


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)


@contextmanager
def atomic_dir(target: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; on success it becomes ``target`` (an existing
    directory there is replaced), on any exception it is removed with everything in it."""
    target = Path(target)
    if not target.name:
        raise ValueError(f"atomic output needs a directory name, got {str(target)!r}")
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(target, DEFAULT_SUFFIX, _create_dir)
    try:
        yield tmp
        if fsync:
            for folder, _dirs, files in os.walk(tmp):
                for name in files:
                    _fsync_path(Path(folder) / name)
                _fsync_path(Path(folder))
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fsync:
        _fsync_path(target.parent)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside first and deleted after."""
    if not target.exists():
        os.rename(tmp, target)
        return
    aside = _create_beside(target, ".old", _create_dir)
    os.replace(target, aside)  # a directory may replace an empty one
    try:
        os.rename(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """While active, SIGTERM raises ``Terminated`` (each time it arrives), so ``with`` blocks clean up.

    Outside the main thread (where Python cannot install signal handlers, e.g. click's test runner)
    this does nothing. The previous handler is restored on exit.
    """

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"terminated by signal {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
