"""What an offline GPU node needs beyond its own torch, torchvision and numpy: the project's
dependencies and its build backend (setuptools, for the editable install), followed through their own
requirements, at the versions installed here (the versions the tests ran with), one ``name==version``
per line (``# compiled here`` after the ones with compiled files in this Python).

    python benchmarks/offline_wheels.py                 # the list, for benchmarks/gpu-wheels.sh
    python benchmarks/offline_wheels.py --build         # the build backend's names (installed always)
    python benchmarks/offline_wheels.py --repack DIR    # wheels of the pure ones, from this Python's files

``gpu-wheels.sh`` downloads a pure-Python wheel (``py3-none-any``) of each where one exists;
the rest (scikit-learn, Pillow, PyYAML, ...) have compiled parts for one platform and Python,
and the node must already have them. ``--repack`` stands in for PyPI where there is no network (the
kit's test): it zips the installed files of each pure distribution back into a wheel. Nothing here
reaches the network.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
NODE_HAS = {"torch", "torchvision", "numpy"}   # and everything they pull in (triton, sympy, nvidia-*)
COMPILED = (".so", ".pyd", ".dylib")


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The project's runtime dependencies (no extras)."""
    return [Requirement(r) for r in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]


def build_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The project's build backend: ``pip install -e`` without build isolation needs it in the Python that
    installs (a virtual environment's Python may have no setuptools, or one too old to build wheels)."""
    return [Requirement(r) for r in tomllib.loads(pyproject.read_text())["build-system"]["requires"]]


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


def repack(name: str, dest: Path) -> Path | None:
    """A wheel of the installed distribution ``name`` from its own files (RECORD), or None where it is not
    pure (compiled files, or installed from a platform wheel). Console scripts are left out: pip makes them
    from entry_points.txt."""
    dist = md.distribution(name)
    tags = [line.partition(":")[2].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not is_pure(dist) or not tags or not all(t.endswith("-none-any") for t in tags):
        return None
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in f.parts]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    python = ".".join(sorted({t.split("-")[0] for t in tags}))
    wheel = dest / f"{canonicalize_name(dist.metadata['Name']).replace('-', '_')}-{dist.version}-{python}-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in files:
            path = Path(dist.locate_file(f))
            if f.as_posix() in skip or not path.is_file():
                continue
            data = path.read_bytes()
            z.writestr(f.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f.as_posix()},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--build", action="store_true", help="print only the build backend's names")
    p.add_argument("--repack", metavar="DIR", type=Path, help="write wheels of the pure distributions into DIR")
    a = p.parse_args(argv)
    if a.build:
        print("\n".join(sorted(canonicalize_name(r.name) for r in build_requirements())))
        return
    wanted = closure(project_requirements() + build_requirements())
    if a.repack:
        a.repack.mkdir(parents=True, exist_ok=True)
        made = [w for w in (repack(name, a.repack) for name in wanted) if w]
        print(f"{len(made)} wheels repacked into {a.repack} from this Python's files "
              f"({len(wanted) - len(made)} not pure here)")
        return
    for name, (version, pure) in wanted.items():   # a requirements file; the note tells gpu-wheels.sh
        print(f"{name}=={version}" + ("" if pure else "   # compiled here"))


if __name__ == "__main__":
    main(sys.argv[1:])
