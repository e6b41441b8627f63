"""`iotman serve` keeps garbage collection from stalling requests (gc_gen0_threshold)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from iotman.cli.tuned_server import tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_what_was_loaded_is_frozen_and_young_collections_are_rarer() -> None:
    _, gen1, gen2 = gc.get_threshold()
    tune_garbage_collector(50_000)
    assert gc.get_freeze_count() > 1000  # the modules loaded so far: out of every full collection
    assert gc.get_threshold() == (50_000, gen1, gen2)


@pytest.mark.usefixtures("restored_gc")
def test_zero_keeps_the_interpreter_threshold() -> None:
    before = gc.get_threshold()
    tune_garbage_collector(0)
    assert gc.get_threshold() == before
