"""``worker --plan`` on a storage where the plan never starts: it says what it waits for and stops at --timeout
(a follower started against the wrong storage must not wait forever)."""
from __future__ import annotations

from tests.search.cli.test_cli_errors import cli
from tests.search.plan.test_plan_run import write_plan


def test_a_follower_whose_plan_never_starts_stops_at_its_timeout(synth_data, tmp_path):
    plan = write_plan(tmp_path, synth_data)
    done = cli("worker", "--plan", str(plan), "--storage", str(tmp_path / "s.journal"), "--timeout", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "waiting for the plan to start" in out and "nothing to do for 3s; this worker stops" in out, out
    assert "followed 0 phase(s): none" in out
