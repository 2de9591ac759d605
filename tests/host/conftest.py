"""Fixtures of the host tests: ``pub``, a wire-speaking publisher on a free loopback port (``host_harness.Pub``)."""

from __future__ import annotations

import pytest

from host_harness import Pub


@pytest.fixture
def pub():
    p = Pub()
    yield p
    p.close()
