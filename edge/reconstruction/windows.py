"""Which planes feed which output frame: the window contract shared by offline and live paths.

For a method with window length ``N`` the frame for key plane ``K`` is computed from planes
``[K - N // 2, K - N // 2 + N)``. LRN (N = 200) reads ``[K-100, K+100)``; STIR (N = 61)
``[K-30, K+31)``. The default key of a recording is its centre plane ``n_planes // 2``.
``--every E`` gives keys ``k0, k0 + E, ...`` from the first key whose window fits, ``k0 = N // 2``,
while the window still fits inside the recording.

``cut_windows`` cuts a batch of such windows, one hop apart, out of one span of planes without
copying: a numpy view for the host, a strided view of a torch tensor for a device (the live worker
uploads each span once and cuts the overlapping windows on the GPU).
"""

from __future__ import annotations

import numpy as np


def window_range(key_plane: int, window_planes: int) -> tuple[int, int]:
    """Half-open plane range ``[start, stop)`` of the window for ``key_plane``."""
    if window_planes <= 0:
        raise ValueError(f"window length must be positive, got {window_planes}")
    start = key_plane - window_planes // 2
    return start, start + window_planes


def check_window_fits(key_plane: int, window_planes: int, n_planes: int) -> tuple[int, int]:
    start, stop = window_range(key_plane, window_planes)
    if start < 0 or stop > n_planes:
        raise ValueError(
            f"the {window_planes}-plane window for key {key_plane} is planes [{start}, {stop}), "
            f"outside the recording's [0, {n_planes}); valid keys are "
            f"{window_planes // 2}..{n_planes - window_planes + window_planes // 2}"
        )
    return start, stop


def default_key(n_planes: int) -> int:
    return n_planes // 2


def keys_every(n_planes: int, window_planes: int, every_planes: int) -> list[int]:
    """Keys every ``every_planes`` planes from the first key whose window fits."""
    if every_planes <= 0:
        raise ValueError(f"--every must be positive, got {every_planes}")
    first = window_planes // 2
    last = n_planes - window_planes + window_planes // 2
    return list(range(first, last + 1, every_planes)) if last >= first else []


def cut_windows(span, batch: int, window_planes: int, hop: int):
    """``batch`` overlapping windows ``(batch, window_planes, plane_bytes)`` one ``hop`` apart, as a view of
    ``span``: planes ``[0, (batch - 1) * hop + window_planes)`` of a C-contiguous ``(n, plane_bytes)`` array
    or torch tensor (on any device). No bytes are copied: window ``i`` is rows ``[i * hop, i * hop + N)``.
    A numpy view is read-only (its windows overlap)."""
    if batch < 1 or window_planes < 1 or hop < 1:
        raise ValueError(f"batch, window and hop must be >= 1, got {batch}, {window_planes}, {hop}")
    need = (batch - 1) * hop + window_planes
    if span.ndim != 2 or span.shape[0] < need:
        raise ValueError(f"{batch} windows of {window_planes} planes one hop of {hop} apart need a span of "
                         f"({need}, plane_bytes) planes, got shape {tuple(span.shape)}")
    plane_bytes = int(span.shape[1])
    if isinstance(span, np.ndarray):
        if not span.flags.c_contiguous:
            raise ValueError("the span must be C-contiguous")
        return np.lib.stride_tricks.as_strided(span, shape=(batch, window_planes, plane_bytes),
                                               strides=(hop * span.strides[0], span.strides[0], span.strides[1]),
                                               writeable=False)
    if not span.is_contiguous():
        raise ValueError("the span must be contiguous")
    return span.as_strided((batch, window_planes, plane_bytes), (hop * plane_bytes, plane_bytes, 1),
                           span.storage_offset())
