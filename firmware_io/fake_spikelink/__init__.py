"""A fake SpikeLink library in C (``fake_spikelink.c`` over ``spikelinkapi.h``, the vendor ABI) and its build helper.

``build_fake_spikelink()`` compiles the fake with the system C compiler into a cache folder and
returns the shared library's path, for ``CameraSource(library_path=...)``; see ``build.py``.
"""

from firmware_io.cbuild import CompilerNotFoundError, find_c_compiler
from firmware_io.fake_spikelink.build import FakeControl, FakeError, FakeState, build_fake_spikelink, header_path, source_path

__all__ = [
    "CompilerNotFoundError",
    "FakeControl",
    "FakeError",
    "FakeState",
    "build_fake_spikelink",
    "find_c_compiler",
    "header_path",
    "source_path",
]
