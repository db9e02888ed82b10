from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rossim import RosSim, start_rossim


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    """One simulator subprocess per test module."""
    instance = start_rossim(Path(tmp_path_factory.mktemp("rossim")) / "rds")
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def fresh(sim: RosSim) -> RosSim:
    """The module's simulator, reset to factory state before the test."""
    sim.control.reset()
    return sim
