"""Spans of ring planes straight onto a torch device: the worker's input path when its reconstructor
takes windows on a GPU (``GpuReconstructor.window_device``).

``DeviceSpans.read(start, stop)`` copies planes ``[start, stop)`` from the ring's own memory (page-locked
by ``SpikeRing.register_cuda`` in the daemon, so the copy is one DMA) into a device buffer, under the
ring's seqlock (``RingReader.read_into``: the stamps are read before the copy and again after the
stream has finished it), and returns the ``Planes`` whose ``planes`` is that device span. The
worker then cuts its overlapping windows on the device (``edge.reconstruction.windows.cut_windows``).

Design: the host path copies ring -> reader buffer -> contiguous overlapping windows (each plane up
to ``N / hop`` times) -> pinned staging buffer -> device; pinning the ring bought nothing there.
Here each plane crosses the bus once per span and the windows' overlap is expanded on the device
(the reconstructor's device-to-device copy into its CUDA graph's input). torch is imported only
when a ``DeviceSpans`` is made, i.e. only by a worker whose reconstructor runs on torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.live.ring import Gap, Planes, RingRead, RingReader


class DeviceSpans:
    """Reads spans of ``reader``'s ring into one growing buffer on ``device`` (any torch device)."""

    def __init__(self, reader: RingReader, device: Any) -> None:
        import torch

        self._torch = torch
        self.reader = reader
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._buf = torch.empty((0, reader.ring.plane_bytes), dtype=torch.uint8, device=self.device)

    def read(self, start: int, stop: int) -> RingRead:
        """Planes ``[start, stop)`` as a contiguous uint8 ``(n, plane_bytes)`` view of the device buffer
        (valid until the next ``read``), with their times; or the ``Gap`` (see ``RingReader.read``)."""
        torch = self._torch
        n = stop - start
        if self._buf.shape[0] < n:
            self._buf = torch.empty((n, self.reader.ring.plane_bytes), dtype=torch.uint8, device=self.device)
        span = self._buf[:n]

        def copy(slots: np.ndarray, offset: int) -> None:
            span[offset: offset + len(slots)].copy_(torch.from_numpy(slots), non_blocking=self._cuda)
            if self._cuda:  # the copy must be complete before the ring's stamps are read again
                torch.cuda.current_stream(self.device).synchronize()

        got = self.reader.read_into(start, stop, copy)
        if isinstance(got, Gap):
            return got
        return Planes(got.first_plane, span, got.t_ns)


__all__ = ["DeviceSpans"]
