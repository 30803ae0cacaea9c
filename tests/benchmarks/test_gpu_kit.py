"""The offline GPU kit without a GPU or a network: the wheel list, the script's arguments and its screen,
and the whole kit end to end (``gpu-wheels.sh`` from a stand-in for PyPI, then ``gpu.sh --dry-run``)."""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from offline_wheels import NODE_HAS, closure, is_pure, project_requirements  # noqa: E402


def test_wheel_list_is_what_the_project_needs_beyond_the_nodes_torch():
    found = closure(project_requirements())
    # what an offline node with its own torch typically lacks, and what the study needs
    assert {"optuna", "alembic", "colorlog", "sqlalchemy", "typer", "rich"} <= set(found)
    assert not NODE_HAS & set(found) and not any(n.startswith(("nvidia-", "triton")) for n in found)
    for name, (version, pure) in found.items():
        assert md.version(name) == version and pure == is_pure(md.distribution(name))
    # compiled distributions are listed, not followed: their own requirements come from the node
    assert not found["scikit-learn"][1] and not found["scipy"][1] and "threadpoolctl" not in found


def test_gpu_sh_refuses_unknown_arguments():
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--fast"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "usage: bash benchmarks/gpu.sh [--dry-run [--quick]]" in done.stdout


def test_gpu_sh_help_is_the_one_screen_for_the_gpu_user():
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert re.findall(r"^  (\w+) ", done.stdout, re.M) == ["carry", "run", "send", "back", "try"], done.stdout
    assert "bash benchmarks/gpu.sh" in done.stdout and "'summary:' lines" in done.stdout


@pytest.mark.slow
def test_the_kit_end_to_end_offline_wheels_then_dry_run(tmp_path):
    """gpu-wheels.sh fills a wheel folder (from a stand-in for PyPI: this Python's pure distributions
    repacked, so no network), then gpu.sh --dry-run --quick installs every one of them into a virtual
    environment over this Python and runs the whole check on CPU."""
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    index, wheels = tmp_path / "index", tmp_path / "wheels"
    repacked = subprocess.run([sys.executable, str(BENCHMARKS / "offline_wheels.py"), "--repack", str(index)],
                              capture_output=True, text=True, timeout=600)
    assert repacked.returncode == 0, repacked.stderr
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index), "PIP_CONFIG_FILE": os.devnull}
    fetched = subprocess.run(["bash", str(BENCHMARKS / "gpu-wheels.sh"), str(wheels)], env={**env, **offline},
                             capture_output=True, text=True, timeout=600)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert (wheels / "build.txt").read_text().split() == ["setuptools"]
    assert {w.name for w in wheels.glob("*.whl")} == {w.name for w in index.glob("*.whl")}
    assert "gpu.sh --help" in fetched.stdout.splitlines()[-1]

    log = tmp_path / "gpu-kit.log"
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", "--quick"], capture_output=True,
                          text=True, timeout=1200, env={**env, "GPU_WHEELS": str(wheels), "GPU_KIT_LOG": str(log)})
    assert done.returncode == 0, done.stdout
    out = done.stdout
    assert "offline install into a virtual environment over it" in out
    assert f"installing {len(list(wheels.glob('*.whl')))} of" in out   # a dry run installs every wheel
    assert re.search(r"^  optuna +\S+ +from the wheel folder$", out, re.M) and "unusable" not in out
    summary = [line for line in log.read_text().splitlines() if line.startswith("summary: ")]
    assert summary and summary == [line for line in out.splitlines() if line.startswith("summary: ")][-len(summary):]
    assert summary[0].startswith("summary: matmul peak measured")
    assert any(" img/s, " in line for line in summary)
    # the quickstart's first (enqueued) trial: never pruned (the median rule starts after 2), under the cap
    assert re.match(r"summary: quickstart study \(--workers 1 --n-trials 1\): \d+ trials \(1 complete, 0 pruned, "
                    r"0 failed\)", summary[-1]), summary[-1]
    assert out.rstrip().endswith(f"(they are also in {log})")
    assert not list(tmp_path.glob("facesearch-gpu.*")), "the kit removes its work folder"
