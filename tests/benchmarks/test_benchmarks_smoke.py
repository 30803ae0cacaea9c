"""The benchmarks run end to end in their --quick form and end with their ratio line (no timing checks)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("script", ["loader.py", "evaluate.py", "constraint.py", "scale.py"])
def test_quick_run_ends_with_ratio(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True,
                          timeout=300, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("ratio: ") and last.split()[1].endswith("x"), done.stdout


def test_plan_benchmark_quick_run_ends_with_its_targets() -> None:
    """benchmarks/plan.py --quick: one seed of the three arms under a tiny budget, each scored with intervals."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "plan.py"), "--quick"], capture_output=True, text=True,
                          timeout=900, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    arms = [line for line in lines if line.startswith("seed 0 ") and "val EER" in line]
    assert [line.split()[2] for line in arms] == ["a", "b", "c"] and all("test EER" in line for line in arms)
    assert lines[-1].startswith("targets: spend within B + 5%: "), done.stdout
