"""``facesearch worker --plan``: one worker on any machine that follows a plan's active phase.

It reads the plan's state from the shared storage, works on the phase ``plan run`` has started (with the
fitted spec stored there), moves to the next one when it starts, and stops when the plan is finishing or
done. It never writes the plan's state: ``plan run`` alone decides when a phase ends.
"""
from __future__ import annotations

import time
from typing import Callable

from ..spec import parse_spec
from ..storage import open_storage
from .schema import PlanSpec
from .state import FINISHED, FINISHING, RUNNING, PlanState

POLL = 2.0
START_LIMIT = 3600.0   # a plan not in the storage after this long was never started there (a wrong --storage?)


def follow_plan(plan: PlanSpec, url: str | None, worker_id: int = 0, device: str = "auto",
                log: Callable[[str], None] = print, wait_limit: float | None = None) -> list[str]:
    """Run trials of each phase as it becomes active; the phases this worker took part in. ``wait_limit``:
    seconds to wait for a phase before giving up (None: until the plan ends, or ``START_LIMIT`` for a plan
    that never appears in the storage)."""
    from ..run.preflight import preflight_study
    from ..run.worker import run_worker
    from ..view.trial_log import WorkerLines

    state = PlanState(open_storage(url), plan.name)
    joined: list[str] = []
    waiting_since, said = time.time(), ""
    while True:
        loaded = state.load()
        head = loaded["plan"] if loaded else {}
        if head.get("state") in (FINISHING, FINISHED):
            log(f"plan {plan.name} is {head['state']}; this worker stops")
            return joined
        active = head.get("active")
        row = next((r for r in loaded["phases"] if r["name"] == active), None) if loaded else None
        if row is not None and row.get("status") == RUNNING and active not in joined:
            entry = plan.phase(active)
            spec = preflight_study(parse_spec(row["raw"], source=entry.path), url, device)
            log(f"plan {plan.name}: joining phase {active}")
            ran = run_worker(spec, url, worker_id, None, None, device, log, lines=WorkerLines())
            log(f"plan {plan.name}: phase {active}: ran {ran} trial(s)")
            joined.append(active)
            waiting_since = time.time()
            continue
        what = f"phase after {joined[-1]}" if joined else "the plan to start"
        if said != what:
            log(f"waiting for {what}")
            said = what
        waited = time.time() - waiting_since
        if wait_limit is not None and waited > wait_limit:
            log(f"nothing to do for {wait_limit:.0f}s; this worker stops")
            return joined
        if not loaded and wait_limit is None and waited > START_LIMIT:
            log(f"plan {plan.name} has not started in this storage in {START_LIMIT:.0f}s; this worker stops (start "
                f"facesearch plan run with the same --storage, or give --timeout to wait longer)")
            return joined
        time.sleep(POLL)
