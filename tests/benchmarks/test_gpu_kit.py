"""The offline GPU kit's pieces that run without a GPU or a network: the wheel list and the script's
argument check (``bash benchmarks/gpu.sh --dry-run`` runs the whole kit on CPU, by hand)."""
from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

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
    assert done.returncode == 2 and "usage: bash benchmarks/gpu.sh [--dry-run]" in done.stdout
