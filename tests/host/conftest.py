"""Fixtures of the host tests: ``pub``, a wire-speaking publisher on a free loopback port (``host_harness.Pub``).

``host_harness`` (pyzmq) is imported in the fixture: a conftest that fails to import stops the whole
collection, which on a machine without pyzmq would stop the GPU tests too (``tests/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def pub():
    from host_harness import Pub

    p = Pub()
    yield p
    p.close()
