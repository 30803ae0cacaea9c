"""Every script in benchmarks/ runs in the suite at tiny sizes, so that a change anywhere cannot break one
silently: the ratio benchmarks here in their --quick form, ending with their ratio line (no timing checks);
the GPU kit (gpu-wheels.sh, offline_wheels.py, gpu.sh --dry-run and the gpu_speed.py it runs) in
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
SHARED = {"common.py"}   # imported by the others, not run


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {p.name for p in BENCHMARKS.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts - SHARED == set(RATIO) | KIT, "a new benchmark script needs a smoke run here"


@pytest.mark.parametrize("script", sorted(RATIO))
def test_quick_run_ends_with_ratio(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", *RATIO[script]], capture_output=True,
                          text=True, timeout=600, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    # a ratio, or "none" where its side never got there (budget.py: (b) and (c) not within 1 point of (a))
    assert re.match(r"ratio: (\S+x|none) \(", last), done.stdout
