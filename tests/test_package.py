"""facesearch as a user installs it: a wheel built from this tree, installed into a fresh venv that reuses
the dependencies already installed (nothing is downloaded), used from an empty folder with no PYTHONPATH."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "facenet", "search", "studies")   # what the build reads


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False, **kw)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def user_env(**extra: str) -> dict:
    """The environment of a user who installed the wheel: no PYTHONPATH pointing at a checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the tree: the build's folders (build/, *.egg-info) stay out of the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    (tmp / "src").mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp / "src" / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp / "dist", tmp / "src"])
    (built,) = (tmp / "dist").glob("facesearch-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A venv over this interpreter's packages (pip, setuptools, torch... installed here) with the wheel."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", root])
    if sys.prefix != sys.base_prefix:   # the tests run in a venv: its packages are not the "system" ones
        (purelib,) = root.glob("lib/python*/site-packages")
        (purelib / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # away from the checkout (its facesearch.egg-info would pass for an install) and past an editable install
    # of the same version in the system site-packages
    run([root / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q",
         wheel], cwd=root, env=user_env())
    return root


def test_builtin_studies_resolve_by_name_or_path(tmp_path, monkeypatch):
    from search.builtin import UnknownStudy, builtin_names, builtin_path, resolve_study

    names = sorted(p.stem for p in (ROOT / "studies").glob("*.yaml"))
    assert builtin_names() == names and "quickstart" in names
    assert resolve_study("quickstart") == builtin_path("quickstart") == ROOT / "studies" / "quickstart.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("name: mine\n")   # a file of that name wins over the built-in study
    assert resolve_study("quickstart") == Path("quickstart")
    for arg in ("quikstart", "studies/quickstart.yaml", "nope.yaml"):
        with pytest.raises(UnknownStudy) as e:
            resolve_study(arg)
        assert str(e.value) == (f"{arg}: no such study spec file nor built-in study; "
                                f"built-in studies: {', '.join(names)}")


def test_wheel_holds_every_module_and_builtin_study(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    studies = {f"search/studies/{p.relative_to(ROOT / 'studies').as_posix()}"
               for p in [*(ROOT / "studies").glob("*.yaml"), *(ROOT / "studies" / "plans").glob("*.yaml")]}
    sources = [*ROOT.glob("facenet/**/*.py"), *ROOT.glob("search/**/*.py")]
    modules = {p.relative_to(ROOT).as_posix() for p in sources}
    assert len(studies) >= 8 and studies <= names, sorted(studies - names)
    assert modules <= names, f"not in the wheel (pyproject.toml's packages list?): {sorted(modules - names)}"


def test_installed_command_runs_from_an_empty_folder(venv, tmp_path):
    help_text = run([venv / "bin" / "facesearch", "--help"], cwd=tmp_path, env=user_env()).stdout
    assert "quickstart" in help_text and "study" in help_text
    probe = ("import json, facenet, search, search.builtin as b; print(json.dumps({"
             "'search': search.__file__, 'facenet': facenet.__file__, 'dir': str(b.builtin_dir()), "
             "'names': b.builtin_names(), 'plans': b.plan_names()}))")
    found = json.loads(run([venv / "bin" / "python", "-c", probe], cwd=tmp_path, env=user_env()).stdout)
    for key in ("search", "facenet", "dir"):   # the wheel's copy, not this checkout or an editable install
        assert Path(found[key]).is_relative_to(venv), (key, found[key])
    assert found["names"] == sorted(p.stem for p in (ROOT / "studies").glob("*.yaml"))
    assert found["plans"] == sorted(p.stem for p in (ROOT / "studies" / "plans").glob("*.yaml")) != []


def test_builtin_quickstart_study_runs_from_the_installed_package(venv, tmp_path):
    """Two trials of the shipped quickstart spec: the enqueued narrow ResNet trains, the enqueued ResNet34
    is over the parameter cap and pruned before training."""
    import optuna

    work, data = tmp_path / "empty", tmp_path / "data"
    work.mkdir()
    python = venv / "bin" / "python"
    synth = (f"from facenet.data.synth import synthesize; synthesize({str(data)!r}, identities=64, "
             "images_per_identity=6, size=32, val_pairs=60, test_pairs=20)")
    run([python, "-c", synth], cwd=work, env=user_env())
    locate = "from search.builtin import builtin_path; print(builtin_path('quickstart'))"
    spec = Path(run([python, "-c", locate], cwd=work, env=user_env()).stdout.strip())
    assert spec.is_relative_to(venv)
    journal = tmp_path / "studies.journal"
    env = user_env(FACESEARCH_DATA=str(data), FACESEARCH_RUNS=str(tmp_path / "runs"))
    run([venv / "bin" / "facesearch", "study", "run", spec, "--workers", "1", "--n-trials", "2",
         "--storage", journal], cwd=work, env=env)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="quickstart", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert 0 <= trials[0].value <= 100 and trials[1].params["model"] == "resnet34"
    assert list(work.iterdir()) == []   # everything went where the environment said, nothing into the cwd
