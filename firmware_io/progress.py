"""Progress bars for long offline work (``reconstruct``, ``simulate``, ``bench decode``, ``spike-train eval``).

One bar style for every command: tqdm on stderr, shown only when stderr is a terminal, so pipes, log
files and scripts reading stdout never see progress output (tqdm's ``TQDM_DISABLE=1`` turns it off
everywhere). stdout stays for results.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(*, total: float | None, desc: str, unit: str, disable: bool = False) -> tqdm:
    """A bar of ``total`` ``unit`` (``None``: a counter) labelled ``desc``; a no-op unless stderr is a
    terminal, or always with ``disable`` (a library call that was not asked for progress).

    Use as a context manager and ``update(n)``; it closes (and stays on screen) at the end.
    """
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=True if disable else None,
                dynamic_ncols=True, mininterval=0.5)
