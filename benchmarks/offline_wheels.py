"""What an offline GPU node needs beyond its own torch, torchvision and numpy: the project's
dependencies, followed through their own requirements, at the versions installed here (the
versions the tests ran with), one ``name==version`` per line.

    python benchmarks/offline_wheels.py            # the list, for benchmarks/gpu-wheels.sh

``gpu-wheels.sh`` downloads a pure-Python wheel (``py3-none-any``) of each where one exists;
the rest (scikit-learn, Pillow, PyYAML, ...) have compiled parts for one platform and Python,
and the node must already have them. Nothing here reaches the network.
"""
from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
NODE_HAS = {"torch", "torchvision", "numpy"}   # and everything they pull in (triton, sympy, nvidia-*)
COMPILED = (".so", ".pyd", ".dylib")


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The project's runtime dependencies (no extras)."""
    return [Requirement(r) for r in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]


def applies(req: Requirement) -> bool:
    """Does a requirement apply on this interpreter, outside any extra?"""
    return req.marker is None or req.marker.evaluate({"extra": ""})


def is_pure(dist: md.Distribution) -> bool:
    return not any(str(f).endswith(COMPILED) for f in dist.files or [])


def closure(requirements: list[Requirement]) -> dict[str, tuple[str, bool]]:
    """name -> (installed version, pure here) for every distribution the requirements reach,
    short of ``NODE_HAS``. Compiled distributions are listed (some publish a pure wheel too,
    e.g. SQLAlchemy) but not followed: a node that has one has what it requires."""
    found: dict[str, tuple[str, bool]] = {}
    todo = [r for r in requirements if applies(r)]
    while todo:
        name = canonicalize_name(todo.pop().name)
        if name in NODE_HAS or name in found:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            sys.exit(f"{name} is not installed here; install the project (pip install -e .) first")
        found[name] = (dist.version, is_pure(dist))
        if found[name][1]:
            todo.extend(r for r in map(Requirement, dist.requires or []) if applies(r))
    return dict(sorted(found.items()))


def main() -> None:
    for name, (version, _) in closure(project_requirements()).items():
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
