"""Every script in benchmarks/ runs in the suite at tiny sizes, so that a change anywhere cannot break one
silently: the ratio benchmarks here in their --quick form, ending with their ratio line (no timing checks),
and plan.py --quick; the GPU kit (gpu-wheels.sh, offline_wheels.py, gpu.sh --dry-run and the gpu_speed.py it runs) in
tests/benchmarks/test_gpu_kit.py."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# script -> arguments after --quick that make it tinier still
RATIO = {"loader.py": [], "evaluate.py": [], "constraint.py": [], "scale.py": [], "train_step.py": [],
         "pruning.py": ["--trials", "2"], "budget.py": ["--budget", "4"]}
KIT = {"gpu.sh", "gpu-wheels.sh", "offline_wheels.py", "gpu_speed.py"}   # test_gpu_kit.py
OWN = {"plan.py"}   # its own test below (its last line names its targets)
SHARED = {"common.py"}   # imported by the others, not run


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {p.name for p in BENCHMARKS.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts - SHARED == set(RATIO) | KIT | OWN, "a new benchmark script needs a smoke run here"


@pytest.mark.parametrize("script", sorted(RATIO))
def test_quick_run_ends_with_ratio(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", *RATIO[script]], capture_output=True,
                          text=True, timeout=600, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    # a ratio, or "none" where its side never got there (budget.py: (b) and (c) not within 1 point of (a))
    assert re.match(r"ratio: (\S+x|none) \(", last), done.stdout


def test_plan_benchmark_quick_run_ends_with_its_targets() -> None:
    """benchmarks/plan.py --quick: one seed of the three arms under a tiny budget, each scored with intervals."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "plan.py"), "--quick"], capture_output=True, text=True,
                          timeout=900, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    arms = [line for line in lines if line.startswith("seed 0 ") and "val EER" in line]
    assert [line.split()[2] for line in arms] == ["a", "b", "c"] and all("test EER" in line for line in arms)
    assert lines[-1].startswith("targets: spend within B + 5%: "), done.stdout
