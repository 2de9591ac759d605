"""The UHSR ``.npz`` layout (U-CALTECH / U-CIFAR real low-light captures): reader and writer.

Layout: one ``.npz`` per sample with ``spk`` ``uint8 (T, H, W)`` 0/1 planes the right way up,
``label`` (int64) and ``label_name`` (str, e.g. ``'4144_helicopter.jpg'``). The reader offers the
same plane access as ``DatReader`` (packed planes in camera order, upright unpacked planes).

Reading a file nobody vouches for: an ``.npz`` is a zip of ``.npy`` members, and a few megabytes
of deflated zeros can declare gigabytes. So the reader

- reads only members numpy could have written (stored or deflated), and each one's ``.npy``
  header before any of its data: ``spk`` must be a 3-D array of bool, integer or float numbers
  (not strings, objects or records), ``label`` a single integer, ``label_name`` a single string,
  and each member's size in the zip directory must match what its header declares;
- checks the memory it will need against a budget before decompressing anything: ``max_bytes``,
  by default ``SPIKE_EDGE_NPZ_MAX_MB`` megabytes from the environment, else ``DEFAULT_MAX_MB``;
- keeps only the packed planes (one bit per pixel): ``spk`` is decompressed ``CHUNK_BYTES`` at a
  time, each chunk checked to hold only 0 and 1 and packed, so memory is the packed planes plus
  one chunk whatever the file declares. (A Fortran-ordered ``spk`` must be read whole before its
  planes can be packed; the budget counts it whole.) A 1.9 MB file of deflated zeros declaring
  19,500 planes of 250x400 takes 333 MB this way (310 MB needed by the budget), not 6 GB.

Every problem with the file is a ``FormatError`` naming the file and the bad value; a missing file
is ``FileNotFoundError``.
"""

from __future__ import annotations

import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from firmware_io.atomic import atomic_path
from firmware_io.bitpack import pack_planes, unpack_planes
from firmware_io.plane_range import PlaneRangeReader
from firmware_io.contract import FormatError, Geometry

MAX_MB_ENV = "SPIKE_EDGE_NPZ_MAX_MB"
DEFAULT_MAX_MB = 1024  # MB (10**6 bytes) an .npz reader may use: about 80,000 packed 250x400 planes
CHUNK_BYTES = 16 << 20  # decompressed bytes of 'spk' read and packed at a time
MAX_SCALAR_BYTES = 1 << 16  # the largest 'label' / 'label_name' item read
SPK, LABEL, LABEL_NAME = "spk", "label", "label_name"
_NUMBER_KINDS = "biuf"  # bool, signed, unsigned, float
#: How members may be compressed: as numpy writes them (``savez``: stored, ``savez_compressed``: deflated).
#: Others are refused before decompressing: an LZMA member's header alone can make the decoder
#: allocate a dictionary of up to 4 GB.
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# What zipfile and its decompressor raise on a damaged archive: bad structure, data or CRC
# (BadZipFile, struct.error, zlib.error, EOFError), an encrypted member (RuntimeError), undecodable
# names or strings (UnicodeDecodeError is a ValueError), I/O (OSError).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, zlib.error, EOFError, NotImplementedError,
                   RuntimeError, ValueError, OSError)
# What numpy's .npy header parser raises on a malformed header (it tokenizes and evaluates a Python literal).
_HEADER_ERRORS = (ValueError, TypeError, SyntaxError, tokenize.TokenError, RecursionError, OverflowError, KeyError)


def max_bytes_from_env() -> int:
    """The reader's memory budget in bytes: ``SPIKE_EDGE_NPZ_MAX_MB`` megabytes, else ``DEFAULT_MAX_MB``."""
    text = os.environ.get(MAX_MB_ENV)
    if text is None or not text.strip():
        return DEFAULT_MAX_MB * 10**6
    try:
        mb = float(text)
    except ValueError:
        raise ValueError(f"{MAX_MB_ENV} must be a number of megabytes, got {text!r}") from None
    if not (math.isfinite(mb) and mb > 0):
        raise ValueError(f"{MAX_MB_ENV} must be a positive number of megabytes, got {text!r}")
    return int(mb * 10**6)


def _member(names: set[str], key: str) -> str | None:
    """The zip member holding array ``key`` (``key.npy``, as ``numpy.savez`` names it, or bare ``key``)."""
    for name in (f"{key}.npy", key):
        if name in names:
            return name
    return None


class NpzReader(PlaneRangeReader):
    """A UHSR sample, its planes packed while loading (see the module docstring for the checks).

    ``max_bytes``: the most memory the reader may use (``None``: ``max_bytes_from_env()``).
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such spike file: {self.path}")
        self.max_bytes = max_bytes_from_env() if max_bytes is None else int(max_bytes)
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        try:
            with zipfile.ZipFile(self.path) as archive:
                self._load(archive)
        except FormatError:
            raise
        except zipfile.BadZipFile as exc:
            raise FormatError(f"{self.path} is not a valid .npz file (a zip archive of .npy arrays): {exc}") from exc
        except _ARCHIVE_ERRORS as exc:
            raise FormatError(f"{self.path} is not a readable .npz file: {type(exc).__name__}: {exc}") from exc

    # -- loading ----------------------------------------------------------------------------------
    def _load(self, archive: zipfile.ZipFile) -> None:
        names = set(archive.namelist())
        spk = _member(names, SPK)
        if spk is None:
            found = sorted(name.removesuffix(".npy") for name in names)
            raise FormatError(f"{self.path} has no 'spk' array (found {found}); not a UHSR sample")
        label = self._scalar(archive, _member(names, LABEL), LABEL, "iu", "an integer")
        self.label = None if label is None else int(label)
        name = self._scalar(archive, _member(names, LABEL_NAME), LABEL_NAME, "US", "a string")
        if isinstance(name, bytes):
            name = name.decode("utf-8", errors="replace")
        self.label_name = None if name is None else str(name)
        self._load_planes(archive, archive.getinfo(spk))

    def _open(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> IO[bytes]:
        """The member's decompressed stream; only the compressions numpy writes are opened."""
        if info.compress_type not in _COMPRESSIONS:
            raise FormatError(f"{self.path}: {key!r} ({info.filename!r}) uses zip compression method "
                              f"{info.compress_type}; .npz members are {' or '.join(_COMPRESSIONS.values())}")
        return archive.open(info)

    def _header(self, stream: IO[bytes], key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """``(shape, fortran_order, dtype)`` from the ``.npy`` header at the start of ``stream``."""
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(stream)
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(stream)
        except _HEADER_ERRORS as exc:
            raise FormatError(f"{self.path}: {key!r} is not a valid .npy array: {exc}") from exc
        raise FormatError(f"{self.path}: {key!r} uses .npy format version {version}; versions 1.0 and 2.0 are read")

    def _check_size(self, info: zipfile.ZipInfo, key: str, header_bytes: int, data_bytes: int, what: str) -> None:
        if info.file_size != header_bytes + data_bytes:
            raise FormatError(
                f"{self.path}: member {info.filename!r} holds {info.file_size} bytes, but its header declares "
                f"{what} ({header_bytes} + {data_bytes} bytes): the file is truncated or corrupt"
            )

    def _read_exact(self, stream: IO[bytes], n: int, key: str) -> bytes:
        data = stream.read(n)
        if len(data) != n:
            raise FormatError(f"{self.path}: {key!r} ends after {len(data)} of {n} bytes: the file is truncated")
        return data

    def _scalar(self, archive: zipfile.ZipFile, member: str | None, key: str, kinds: str, what: str):
        """The single value of member ``key`` (``None`` when absent), whose dtype kind must be in ``kinds``."""
        if member is None:
            return None
        info = archive.getinfo(member)
        with self._open(archive, info, key) as stream:
            shape, _, dtype = self._header(stream, key)
            if shape != () or dtype.kind not in kinds or dtype.fields is not None or dtype.itemsize > MAX_SCALAR_BYTES:
                raise FormatError(f"{self.path}: {key!r} must be {what}, got an array of shape {shape} and dtype {dtype}")
            self._check_size(info, key, stream.tell(), dtype.itemsize, f"one {dtype} value")
            return np.frombuffer(self._read_exact(stream, dtype.itemsize, key), dtype)[0].item()

    def _load_planes(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        with self._open(archive, info, SPK) as stream:
            shape, fortran_order, dtype = self._header(stream, SPK)
            if dtype.kind not in _NUMBER_KINDS or dtype.fields is not None or dtype.subdtype is not None:
                raise FormatError(f"{self.path}: 'spk' must hold 0/1 numbers (bool, integer or float), got dtype {dtype}")
            if len(shape) != 3 or 0 in shape:
                raise FormatError(f"{self.path}: 'spk' must have shape (T, H, W) with T, H, W > 0, got {shape}")
            n_planes, height, width = shape
            try:
                geometry = Geometry(height, width)
            except ValueError as exc:
                raise FormatError(f"{self.path}: 'spk' planes: {exc}") from None
            plane_raw = geometry.pixels * dtype.itemsize
            chunk_planes = max(1, min(n_planes, CHUNK_BYTES // plane_raw))
            # Held: the packed planes. Per chunk: the raw bytes, a bool copy, its flipped copy (pack_planes)
            # and the 0/1 test. A Fortran-ordered array is read whole first.
            needed = n_planes * geometry.plane_bytes + chunk_planes * (plane_raw + 3 * geometry.pixels)
            if fortran_order:
                needed += n_planes * plane_raw
            if needed > self.max_bytes:
                raise FormatError(
                    f"{self.path}: 'spk' declares {n_planes:,} planes of {geometry} {dtype}: reading it needs "
                    f"{needed / 1e6:,.1f} MB, over the {self.max_bytes / 1e6:,.1f} MB budget for .npz files "
                    f"(set {MAX_MB_ENV} to change it)"
                )
            self._check_size(info, SPK, stream.tell(), n_planes * plane_raw, f"{shape} {dtype}")
            self.geometry = geometry
            self.n_planes = int(n_planes)
            self._packed = np.empty((self.n_planes, geometry.plane_bytes), dtype=np.uint8)
            if fortran_order:
                whole = np.frombuffer(self._read_exact(stream, n_planes * plane_raw, SPK), dtype)
                whole = whole.reshape(shape, order="F")
                chunks = ((first, whole[first: first + chunk_planes]) for first in range(0, n_planes, chunk_planes))
            else:
                chunks = ((first, np.frombuffer(self._read_exact(stream, min(chunk_planes, n_planes - first) * plane_raw,
                                                                 SPK), dtype).reshape(-1, height, width))
                          for first in range(0, n_planes, chunk_planes))
            for first, planes in chunks:
                self._check_values(planes, first)
                self._packed[first: first + len(planes)] = pack_planes(planes.astype(np.bool_, copy=False))

    def _check_values(self, planes: np.ndarray, first: int) -> None:
        """Every value of ``planes`` (planes ``first...`` of 'spk') is 0 or 1; else a FormatError naming one."""
        kind = planes.dtype.kind
        if kind == "b":
            return
        if kind == "u" and planes.max() <= 1:
            return
        if kind == "i" and planes.min() >= 0 and planes.max() <= 1:
            return
        bad = (planes != 0) & (planes != 1)
        if not bad.any():
            return
        t, row, column = np.unravel_index(int(np.flatnonzero(bad)[0]), planes.shape)
        value = planes[t, row, column].item()
        raise FormatError(
            f"{self.path}: 'spk' must hold only 0 and 1, but plane {first + t} holds {value!r} "
            f"(row {row}, column {column})"
        )

    # -- access -----------------------------------------------------------------------------------
    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        start, stop = self._range(start, stop)
        return self._packed[start:stop]

    def unpacked(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        start, stop = self._range(start, stop)
        return unpack_planes(self._packed[start:stop], self.geometry)


def write_uhsr_npz(path: str | os.PathLike, planes: np.ndarray, label: int, label_name: str) -> Path:
    """Write one UHSR-layout sample atomically."""
    path = Path(path)
    planes = np.asarray(planes, dtype=np.uint8)
    if planes.ndim != 3:
        raise ValueError(f"planes must be (T, H, W), got {planes.shape}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, spk=planes, label=np.int64(label), label_name=np.str_(label_name))
    return path
