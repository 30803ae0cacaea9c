"""The journal file survives what real disks do to it, with real processes and real files: a record cut at any byte (a
full disk, a killed NFS client, a copy taken mid-run), cut bytes already fused with a later write (what older
versions left), a disk that fills while a study runs, a stop signal in the middle of an append, a file that is not a
journal, and read-only commands on a journal that is not there. After each, every study in the file loads with all
its complete trials, in facesearch and in plain Optuna."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal._file import LOCK_FILE_SUFFIX
from optuna.trial import TrialState

from search.interrupts import raise_when_safe
from search.journal import CheckedJournal
from tests.search.cli.test_cli_errors import cli, one_line_error
from tests.search.run.test_workers import write_spec

CLI = [sys.executable, "-P", "-m", "search.cli"]


def complete_trials(path: Path) -> dict[str, int]:
    """Complete trials per study, read by plain Optuna (not facesearch's reader)."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return {s.study_name: len(optuna.load_study(study_name=s.study_name, storage=storage)
                              .get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}


def kept_at(data: bytes, cut: int) -> bytes:
    """What a cut at ``cut`` keeps: every record that ended before it."""
    return data[:data.rfind(b"\n", 0, cut) + 1]


@pytest.fixture(scope="module")
def journal(synth_data, tmp_path_factory) -> bytes:
    """A journal written by a real ``study run`` (2 trained trials) and a second study beside it."""
    work = tmp_path_factory.mktemp("journal")
    spec = write_spec(work / "tiny.yaml", synth_data, "tiny", n_trials=2, epochs=1)
    path = work / "s.journal"
    env = dict(os.environ, FACESEARCH_RUNS=str(work / "runs"))
    out = subprocess.run([*CLI, "study", "run", str(spec), "--storage", str(path)], capture_output=True, text=True,
                         timeout=600, env=env, cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    other = optuna.create_study(study_name="other", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert ours(complete_trials(path)) == {"tiny": 2, "other": 3}
    return path.read_bytes()


def ours(counts: dict[str, int]) -> dict[str, int]:
    """The two studies of the test (the cost model's calibration study sits beside them)."""
    return {k: v for k, v in counts.items() if k in ("tiny", "other")}


def write_one_record(path: Path) -> subprocess.CompletedProcess:
    """Another process appends through facesearch's storage (as any run does: a user attribute here)."""
    code = ("import sys, optuna; from search.storage import open_storage; s = open_storage(sys.argv[1]); "
            "name = optuna.get_all_study_names(s)[0]; optuna.load_study(study_name=name, storage=s)"
            ".set_user_attr('touched', 1)")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)


def cut_points(data: bytes) -> list[int]:
    lines = data.splitlines(keepends=True)
    last, before = len(lines[-1]), len(lines[-2])
    end = len(data)
    # inside the last record: its first byte, its middle, all but its newline; inside an earlier one
    return [end - last + 1, end - last // 2, end - 1, end - last - before // 2, len(lines[0]) + 3]


@pytest.mark.parametrize("where", range(5))
def test_a_journal_cut_at_any_byte_keeps_every_complete_record(journal, tmp_path, where):
    cut = cut_points(journal)[where]
    path = tmp_path / "s.journal"
    path.write_bytes(journal[:cut])
    expected = complete_trials_of_bytes(kept_at(journal, cut), tmp_path)

    status = cli("studies", "--storage", str(path))          # a reader: one line, and every study
    assert status.returncode == 0, status.stderr
    notes = [line for line in status.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and "last record is cut" in notes[0], status.stderr
    for name in ours(expected):
        assert name in status.stdout
    assert path.read_bytes() == journal[:cut], "reading changes nothing"

    out = write_one_record(path)                             # a writer repairs first, then appends
    assert out.returncode == 0, out.stderr
    repaired = [line for line in out.stderr.splitlines() if "repaired" in line]
    assert len(repaired) == 1 and "original is saved as" in repaired[0], out.stderr
    backups = list(tmp_path.glob("s.journal.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == journal[:cut], "the original is kept as it was"
    assert path.read_bytes().startswith(kept_at(journal, cut)) and path.read_bytes().endswith(b"\n")
    assert ours(complete_trials(path)) == ours(expected), "plain Optuna reads it: every complete trial of every study"


def complete_trials_of_bytes(data: bytes, folder: Path) -> dict[str, int]:
    path = folder / "expected.journal"
    path.write_bytes(data)
    return complete_trials(path)


def test_cut_bytes_fused_with_a_later_write_are_read_past_and_repaired(journal, tmp_path):
    """What older versions left: plain Optuna appends straight after the cut bytes, and can read nothing after."""
    path = tmp_path / "s.journal"
    path.write_bytes(journal[:cut_points(journal)[1]])
    plain = ("import sys, optuna; s = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend("
             "sys.argv[1])); study = optuna.load_study(study_name='other', storage=s); "
             "study.set_user_attr('a', 1); study.set_user_attr('b', 2)")
    old = subprocess.run([sys.executable, "-c", plain, str(path)], capture_output=True, text=True, timeout=120)
    assert "JSONDecodeError" in old.stderr, "its second write fuses, and it dies on the next read (issue 22)"
    with pytest.raises(ValueError):                          # plain Optuna cannot read it any more
        complete_trials(path)
    for command in (["studies"], ["study", "status", "tiny"], ["best", "tiny"]):
        out = cli(*command, "--storage", str(path))
        assert out.returncode == 0, out.stderr
        notes = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(notes) == 1 and "fused" in notes[0], out.stderr
    assert write_one_record(path).returncode == 0
    assert ours(complete_trials(path)) == ours(complete_trials_of_bytes(kept_at(journal, len(journal) - 2), tmp_path))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    attrs = optuna.load_study(study_name="other", storage=storage).user_attrs
    assert (attrs["a"], attrs["b"]) == (1, 2), "the record fused with the cut bytes is kept"


def test_a_study_run_on_a_cut_journal_repairs_it_and_goes_on(journal, synth_data, tmp_path):
    path = tmp_path / "s.journal"
    cut = cut_points(journal)[0]
    path.write_bytes(journal[:cut])
    before = complete_trials_of_bytes(kept_at(journal, cut), tmp_path)
    spec = write_spec(tmp_path / "tiny.yaml", synth_data, "tiny", n_trials=3, epochs=1)
    out = subprocess.run([*CLI, "study", "run", str(spec), "--storage", str(path)], capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs")), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "runs").glob("tiny/worker-*.log"))
    repaired = [line for line in (out.stdout + out.stderr + logs).splitlines() if "repaired" in line]
    assert len(repaired) == 1, "the first process to write repairs it, once"
    after = complete_trials(path)
    assert after["other"] == before["other"] and after["tiny"] == 3


# ---------------------------------------------------------------- a full disk
def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_disk_that_fills_during_a_study_leaves_the_journal_readable(journal, synth_data, tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission); "
                    "test_a_write_over_the_file_size_limit_is_undone covers the write")
    try:
        path = disk / "s.journal"
        path.write_bytes(journal)
        filler = fill(disk)
        spec = write_spec(tmp_path / "tiny.yaml", synth_data, "tiny", n_trials=4, epochs=1)
        env = dict(os.environ, FACESEARCH_RUNS=str(tmp_path / "runs"))
        run = [*CLI, "study", "run", str(spec), "--storage", str(path)]
        out = subprocess.run(run, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        print(f"full disk: study run exit {out.returncode}; last line: {out.stderr.strip().splitlines()[-1:]}")
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stdout + out.stderr
        assert "No space left on device" in out.stdout + out.stderr
        assert path.read_bytes().endswith(b"\n"), "the journal ends on a complete record"
        kept = ours(complete_trials(path))
        assert kept["other"] == 3 and kept["tiny"] >= 2, "plain Optuna reads every study, every trial kept"
        filler.unlink()                                       # space freed: the study goes on to its end
        out = subprocess.run(run, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert ours(complete_trials(path)) == {"tiny": 4, "other": 3}
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_write_over_the_file_size_limit_is_undone(journal, tmp_path):
    """The same failure without a mount: RLIMIT_FSIZE makes the append fail part-way (EFBIG)."""
    path = tmp_path / "s.journal"
    path.write_bytes(journal)
    code = ("import resource, signal, sys, optuna; from search.storage import open_storage; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); s = open_storage(sys.argv[1]); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2]))); "
            "optuna.load_study(study_name='other', storage=s).set_user_attr('big', 'x' * 4096)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(len(journal) + 100)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "cannot write journal" in out.stderr, out.stderr
    assert path.read_bytes() == journal, "the half-written record is truncated away"
    assert ours(complete_trials(path)) == {"tiny": 2, "other": 3}


# ---------------------------------------------------------------- a stop signal mid-append
class Stop(BaseException):
    """What a worker's stop handler raises (its ``_Interrupted``)."""


def test_a_stop_signal_in_an_append_never_leaves_the_lock_behind(tmp_path):
    """A signal handled just after Optuna makes the lock file, before the ``try`` that removes it: raised
    there, the stop left the lock, and every process of the study (the stopping one first, marking its trial
    interrupted) waited out the 30 s grace period. Here the append ends, and the stop comes after."""
    path = tmp_path / "s.journal"
    journal = CheckedJournal(str(path))
    record = {"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}
    take = journal._lock.acquire

    def take_then_signal() -> bool:
        taken = take()
        os.kill(os.getpid(), signal.SIGUSR1)   # handled at the next bytecode: before get_lock_file's try
        return taken

    journal._lock.acquire = take_then_signal
    previous = signal.signal(signal.SIGUSR1, lambda *_: raise_when_safe(Stop()))
    try:
        with pytest.raises(Stop):
            journal.append_logs([record])
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert not os.path.lexists(str(path) + LOCK_FILE_SUFFIX), "the lock file was left behind"
    assert list(journal.read_logs(0)) == [record], "the append the signal met was finished"
    del journal._lock.acquire   # the lock's own method again
    journal.append_logs([record])   # the next write takes the lock at once
    assert len(list(CheckedJournal(str(path)).read_logs(0))) == 2


# ---------------------------------------------------------------- not a journal, not there
@pytest.mark.parametrize("content", [b"name: tiny\nspace: {}\n", bytes(range(256)) * 4, b"\xff\xfe garbage"])
def test_a_file_that_is_not_a_journal_is_one_line_and_left_alone(tmp_path, content):
    path = tmp_path / "not.journal"
    path.write_bytes(content)
    for command in (["studies"], ["study", "status", "x"], ["best", "x"]):
        one_line_error(cli(*command, "--storage", str(path)), f"{path} is not an Optuna journal (first bytes")
    assert path.read_bytes() == content


@pytest.mark.parametrize("command", [["studies"], ["study", "status", "x"], ["best", "x"],
                                     ["report", "x", "--out", "rep"], ["dashboard"], ["study", "delete", "x"]])
def test_read_only_commands_never_create_a_storage(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    for storage in ([], ["--storage", "deep/er/s.journal"], ["--storage", "sqlite:///none.db"]):
        line = one_line_error(cli(*command, *storage), "no storage at")
        assert "run a study first" in line
        assert sorted(p.name for p in tmp_path.iterdir()) == [], f"{command} {storage} created a file"
