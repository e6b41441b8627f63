"""The uvicorn server of ``iotman serve``, with the garbage collector tuned once it has started."""

from __future__ import annotations

import gc
from typing import Any

import uvicorn

__all__ = ["TunedServer", "tune_garbage_collector"]


class TunedServer(uvicorn.Server):
    """Tunes the garbage collector once started: by then the store is open and uvicorn's
    own modules are loaded, so what they hold is frozen too."""

    def __init__(self, config: uvicorn.Config, gen0_threshold: int) -> None:
        super().__init__(config)
        self._gen0_threshold = gen0_threshold

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            tune_garbage_collector(self._gen0_threshold)


def tune_garbage_collector(gen0_threshold: int) -> None:
    """Keep full collections short: they hold the GIL, so every request waits them out.

    What the server loaded at start (tens of thousands of objects: a full collection of
    them takes 30-100 ms on a small machine) is frozen out of collection, and the young
    generation is collected less often, so a batch's short-lived objects mostly die
    before a collection promotes them towards the old generation.
    """
    gc.collect()
    gc.freeze()
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
