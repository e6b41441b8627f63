"""Cron jobs (SPEC §4.4): each job's function runs once per tick, across every server on the store.

Once a second the runner looks for jobs whose latest tick (at or before now) is later
than the tick they last ran for, and runs them: the claim of the tick and the run commit
in one transaction, so two servers on one store run a tick once (the second sees it taken)
and a tick whose run was cut short by a crash runs again. After downtime the latest missed
tick runs once, not every one that was missed.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from iotman.core.clock import Clock
from iotman.core.cron_job import CronJobDefinition
from iotman.engine.admin_service import CRON_STATE
from iotman.engine.background import BackgroundLoop
from iotman.engine.definition_kinds import CRON_JOB
from iotman.engine.function_service import FunctionService
from iotman.storage.ports import Store

__all__ = ["CronRunner"]

log = logging.getLogger("iotman.cron")


class CronRunner(BackgroundLoop):
    name = "iotman-cron"

    def __init__(self, store: Store, functions: FunctionService, clock: Clock, executor: Executor) -> None:
        super().__init__()
        self._store = store
        self._functions = functions
        self._clock = clock
        self._executor = executor

    async def tick(self) -> bool:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.run_due)
        return False  # the next tick is a second away at the soonest

    def run_due(self) -> int:
        """Run every job whose tick has come; the number run."""
        ran = 0
        now = self._clock.now_us()
        for ws in self._store.list_workspaces():
            for record in self._store.list_definitions(ws.id, CRON_JOB.kind):
                job = CronJobDefinition.model_validate(record.body)
                state = self._store.get_setting(ws.id, CRON_STATE + job.name)
                tick = job.last_tick_us(now)
                if state is not None and state.get("tick_us", 0) < tick:
                    ran += self._functions.run_cron(ws, job, tick, now)
        return ran
