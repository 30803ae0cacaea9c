"""Bad input through the real command line: one line naming the input and the fix, exit
status 2, no traceback (unless --debug), and nothing already stored changed."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def cli(*args: str) -> subprocess.CompletedProcess:
    """The console script's ``main()`` in this process (no torch import per call), output captured."""
    import contextlib
    import io
    import traceback

    from search import cli as command_line

    out, err, code = io.StringIO(), io.StringIO(), 0
    argv, sys.argv = sys.argv, ["facesearch", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            command_line.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:   # what a user would see as a traceback
        err.write(traceback.format_exc())
        code = 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> str:
    assert out.returncode == 2, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr + out.stdout
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def tree_digest(folder: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def data(synth_data, tmp_path) -> Path:
    """A private copy of the synthetic set that a test may damage."""
    return Path(shutil.copytree(synth_data, tmp_path / "data", ignore=shutil.ignore_patterns(".facesearch-cache")))


def train_args(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--set", f"train_path={data / 'train1'}", "--set", f"val_path={data / 'val'}",
            "--set", "resolution=32", "--set", "model=resnet_w", "--set", "width=0.125", "--set", "batch_size=8",
            "--set", "epochs=1", "--set", "workers=0", "--set", f"run_dir={tmp_path / 'run'}", *extra]


# ------------------------------------------------------------------ data
@pytest.mark.parametrize("damage,fragments", [
    (lambda d: shutil.rmtree(d / "train1"), ("train1", "does not exist")),
    (lambda d: [shutil.rmtree(p) for p in (d / "train1").iterdir()], ("train1", "no identity sub-folders")),
    (lambda d: [p.unlink() for p in (d / "train1" / "id00000").iterdir()], ("id00000", "holds no .jpg/.png images")),
    (lambda d: shutil.rmtree(d / "val"), ("val", "does not exist")),
    (lambda d: (d / "val" / "val_pairs.csv").write_text("1,a.jpg\n"), ("val_pairs.csv:1", "malformed line")),
    (lambda d: (d / "val" / "val_pairs.csv").write_text(""), ("val_pairs.csv", "has no lines")),
])
def test_training_data_errors(data, tmp_path, damage, fragments):
    damage(data)
    one_line_error(cli(*train_args(data, tmp_path)), *fragments)


def _first_pair(data: Path) -> list[str]:
    return (data / "val" / "val_pairs.csv").read_text().splitlines()[0].split(",")


def test_pair_list_problems(data, tmp_path):
    label, a, b = _first_pair(data)
    pairs = data / "val" / "val_pairs.csv"
    for content, fragment in ((f"1,{a},nope/0.jpg\n", "not found"), (f"3,{a},{b}\n", "must be 0 or 1"),
                              (f"1,{a},../test/{b}\n", "outside")):
        pairs.write_text(content)
        one_line_error(cli(*train_args(data, tmp_path)), "val_pairs.csv:1", fragment)


def test_corrupt_image_is_skipped_in_training_and_refused_in_evaluation(data, tmp_path):
    victim = sorted((data / "train1" / "id00000").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:50])          # truncated jpeg
    with pytest.warns(UserWarning, match=f"skipping unreadable image .*{victim.name}"):
        out = cli(*train_args(data, tmp_path))
    assert out.returncode == 0, out.stderr
    _, a, _ = _first_pair(data)
    (data / "val" / a).write_text("this is not an image")   # a file that is not an image, in a pair list
    one_line_error(cli("score", str(tmp_path / "run"), "--pairs", str(data / "val" / "val_pairs.csv"),
                       "--out", str(tmp_path / "s.txt")), "unreadable image", a)
    assert not (tmp_path / "s.txt").exists()


# ------------------------------------------------------------------ config, device, checkpoints
def test_config_errors(data, tmp_path):
    one_line_error(cli(*train_args(data, tmp_path, "--set", "modle=resnet18")), "modle", "did you mean 'model'")
    one_line_error(cli(*train_args(data, tmp_path, "--set", "model=resnet19")), "unknown model 'resnet19'", "resnet18")
    one_line_error(cli(*train_args(data, tmp_path, "--set", "loss=arcfase")), "unknown loss", "arcface")
    one_line_error(cli(*train_args(data, tmp_path, "--set", "epochs=three")), "epochs", "expects int")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nmodel: [resnet18\n")
    one_line_error(cli("train", "--config", str(bad)), "bad.yaml", "YAML syntax error at line")


def test_gpu_that_does_not_exist(data, tmp_path):
    import torch

    n = torch.cuda.device_count()
    one_line_error(cli(*train_args(data, tmp_path, "--set", f"device=cuda:{n}")), f"cuda:{n}")
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "g", "data": {"train": str(data / "train1"), "val": str(data / "val")},
                                    "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}}))
    one_line_error(cli("study", "run", str(spec), "--gpus", str(n), "--storage", str(tmp_path / "j")),
                   f"GPU {n} does not exist")


def test_checkpoint_of_another_architecture(data, tmp_path):
    assert cli(*train_args(data, tmp_path)).returncode == 0
    import torch

    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    ckpt["config"]["model"] = "mobilenet_v2"
    torch.save(ckpt, tmp_path / "other.pt")
    one_line_error(cli("score", str(tmp_path / "other.pt"), "--pairs", str(data / "val" / "val_pairs.csv"),
                       "--out", str(tmp_path / "s.txt")), "other.pt", "do not match this model", "missing:")


def test_debug_shows_the_traceback(data, tmp_path):
    out = cli("--debug", *train_args(data, tmp_path, "--set", "model=resnet19"))
    assert out.returncode != 0 and "Traceback" in out.stderr


# ------------------------------------------------------------------ specs and storages
def write_spec(path: Path, data: Path, **over) -> Path:
    spec = {"name": "errs", "data": {"train": str(data / "train1"), "val": str(data / "val")},
            "fixed": {"resolution": 32, "model": "resnet_w", "width": 0.125, "workers": 0, "batch_size": 8,
                      "max_val_pairs": 40},
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
            "budget": {"n_trials": 1, "epochs": 1}}
    spec.update(over)
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spec_errors_through_the_cli(synth_data, tmp_path):
    j = str(tmp_path / "j.journal")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace:\n  lr: {type: float, low: 1, high: [\n")
    one_line_error(cli("study", "run", str(bad), "--storage", j), "bad.yaml", "line")
    one_line_error(cli("study", "run", str(write_spec(tmp_path / "a.yaml", synth_data, samplr={"name": "tpe"})),
                       "--storage", j), "samplr", "sampler")
    oversized = write_spec(tmp_path / "b.yaml", synth_data,
                           space={"model": {"type": "categorical", "choices": ["resnet34", "resnet18_se"]}},
                           fixed={"n_out": 1024})
    one_line_error(cli("study", "run", str(oversized), "--storage", j), "no configuration in the space fits",
                   "smallest is")
    chained = write_spec(tmp_path / "c.yaml", synth_data, **{"from": {"study": "nothing-here"}})
    one_line_error(cli("study", "run", str(chained), "--storage", j), "nothing-here")
    assert not Path(j).exists() or "errs" not in cli("studies", "--storage", j).stdout


def test_storage_errors(synth_data, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", synth_data)
    one_line_error(cli("study", "run", str(spec), "--storage", "postgresql://u:secret@127.0.0.1:9/db"),
                   "cannot reach storage", "u:***@")
    one_line_error(cli("studies", "--storage", "redis://localhost"), "unknown scheme 'redis'")
    j = str(tmp_path / "j.journal")
    assert cli("study", "run", str(spec), "--storage", j).returncode == 0
    before = tree_digest(tmp_path / "errs")    # trial run folders sit beside the journal
    journal_before = Path(j).read_bytes()
    one_line_error(cli("study", "status", "nope", "--storage", j), "no study named 'nope'", "errs")
    one_line_error(cli("best", "nope", "--storage", j), "no study named 'nope'")
    # the same name with another space must not mix into the stored study
    other = write_spec(tmp_path / "t.yaml", synth_data,
                       space={"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}})
    one_line_error(cli("study", "run", str(other), "--storage", j), "'errs' already exists", "different search space")
    assert Path(j).read_bytes() == journal_before
    assert tree_digest(tmp_path / "errs") == before
