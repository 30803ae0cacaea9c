"""``facesearch plan run``: preflight every phase, calibrate this device if needed, fit, run the phases in
order (each under its share through ``budget.hours``), re-plan after each with what it measured, finish.

Progress lives in the storage (``state.py``): a second run of the same command resumes (finished phases
are not run again, the interrupted one continues with the knobs it started with).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import yaml
from optuna.trial import TrialState

from facenet.errors import UserError
from facenet.units import fmt_hours

from ..cost.calibration import CalibrationError, CalibrationTable, SharedCalibration, stored_table
from ..cost.datasize import DataSizes
from ..cost.plan import PlanOverBudget, priced_phases
from ..cost.spend import spent_seconds
from ..record import TrialRecord, best_trial
from ..run.preflight import check_cap, check_gpus, check_runs, check_storage, preflight_study
from ..spec import StudySpec, load_spec, parse_spec
from ..spec.reader import read_yaml
from ..storage import open_storage, runs_root
from .fit import OverBudgetFit, PhaseFit, PlanFit, finish_seconds, fit_plan, phase_fits
from .report import publish_note
from .schema import PlanSpec
from .state import DONE, FINISHED, FINISHING, PENDING, RUNNING, PlanState, fitted_raw, now
from .status import fit_table, phases_markdown, status_json

POLL = 2.0


class PlanMismatch(UserError):
    """A plan of the same name in the storage that was started from another file."""


@dataclass
class Run:
    """What one ``plan run`` works with."""

    plan: PlanSpec
    url: str | None
    hours: float
    workers: int
    gpus: list[int] | None
    device: str
    echo: Callable[[str], None]
    print_table: Callable[[object], None]
    live: bool = False

    @property
    def n_gpus(self) -> int:
        return len(self.gpus) if self.gpus else self.workers


# ------------------------------------------------------------------ preflight
def preflight_plan(plan: PlanSpec, url: str | None, device: str = "auto", gpus: list[int] | None = None,
                   warn: Callable[[str], None] | None = None, skip: set[str] = frozenset()) -> None:
    """Every phase's checks before anything is stored: data, cap, ``from:``, device, folders. A phase that takes
    ``from:`` an earlier phase of the plan cannot resolve it yet: its own space and data are checked."""
    check_storage(url)
    if gpus:
        check_gpus(gpus)
    earlier: set[str] = set()
    for entry in plan.phases:
        spec = load_spec(entry.path)
        if entry.name not in skip:
            if spec.from_ is not None and spec.from_.study in earlier:
                check_cap(spec)
                check_runs(spec, url, device)
            else:   # a from: outside the plan must be in the storage already
                preflight_study(spec, url, device, None, warn)
        earlier.add(entry.name)


# ------------------------------------------------------------------ calibration
def worker_threads(workers: int, gpus: list[int] | None) -> int | None:
    """The intra-op threads of the CPU workers the supervisor starts (its own rule: OMP_NUM_THREADS when set,
    else the cores shared out); None on GPUs."""
    if gpus:
        return None
    return int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // workers))


def device_label(plan: PlanSpec, device: str, workers: int, gpus: list[int] | None) -> str:
    """The calibration device the workers will run on (a CPU worker's label names its thread count)."""
    from facenet.probe import device_label as label
    from facenet.train import resolve_device

    config = load_spec(plan.phases[0].path).base_config()
    return label(resolve_device(device if device != "auto" else config.device), worker_threads(workers, gpus))


def calibrate_here(plan: PlanSpec, storage, threads: int | None, limit_s: float, echo) -> tuple[float, bool]:
    """Probe one batch per network and resolution the phases can draw, stopping at ``limit_s``; (seconds spent,
    whether every point was measured)."""
    from facenet.probe import probe

    from ..cost.calibrate import probe_points

    def measure(config, say):
        return probe(config, steps=2, warmup=1, eval_images=64, log=say, min_seconds=0.2).to_dict()

    import torch

    shared = SharedCalibration(storage, lambda m: None, probe=measure)
    configs = probe_points([e.path for e in plan.phases], "shapes")
    start, done, before = time.time(), 0, torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)   # probe as the workers will run
    try:
        for config in configs:
            if time.time() - start > limit_s:
                break
            shared.speed_for(config)
            done += 1
    finally:
        torch.set_num_threads(before)
    if done < len(configs):
        echo(f"calibration: stopped at its share after {done} of {len(configs)} point(s)")
    return time.time() - start, done == len(configs)


# ------------------------------------------------------------------ the fit
def measured_pace(storage, names: list[str]) -> float:
    """Measured / estimated seconds over the trained trials of ``names`` (1 when none ran)."""
    real, estimated = 0.0, 0.0
    for name in names:
        if name not in optuna.get_all_study_names(storage):
            continue
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.PRUNED)):
            r = TrialRecord.of(t)
            est = r.estimate
            if est is not None and r.seconds and t.intermediate_values:
                real += r.seconds
                estimated += est.for_epochs(len(t.intermediate_values)) / est.scale
    return real / estimated if real and estimated else 1.0


def make_fit(run: Run, table: CalibrationTable, label: str, sizes: DataSizes, rows: dict[str, dict] | None,
             calibration_s: float, pace: float = 1.0) -> PlanFit:
    """The plan priced on ``label`` and fitted to the hours; ``rows``: the stored phase states (a done phase
    counts its measured spend, a running one keeps its knobs)."""
    plan = run.plan
    phases, pricer = priced_phases([e.path for e in plan.phases], table, label, sizes)
    fits = phase_fits(plan, phases)
    for f in fits:
        row = (rows or {}).get(f.name, {})
        if row.get("status") == DONE:
            f.done = row
        elif row.get("status") == RUNNING:
            _apply(f, row["overrides"], pricer)
            f.stuck = True
        elif pace != 1.0:
            f.pace = pace
            f.reprice(pricer)
    reserve = finish_seconds(plan, fits, pricer)
    return fit_plan(plan, fits, pricer, run.hours, reserve, calibration_s)


def _apply(f: PhaseFit, overrides: dict, pricer) -> None:
    f.phase.trials = overrides.get("trials", overrides["n_trials"])   # fitted (n_trials: the most it may run)
    if "resolution" in overrides or "max_identities" in overrides:
        f.set_fidelity(pricer, overrides.get("resolution"), overrides.get("max_identities"))
    if "epochs" in overrides and f.base_epochs():
        f.phase.epoch_scale = (overrides["epochs"] + 1e-9) / f.base_epochs()
    f.share_s = overrides["hours"] * 3600


def show_fit(run: Run, fit: PlanFit, label: str, title: str) -> None:
    run.print_table(fit_table(fit, label, run.n_gpus, title))
    for line in fit.changes():
        run.echo(f"fit: {line}")


def refit(run: Run, table, label, sizes, state: PlanState, calibration_s: float, title: str) -> PlanFit:
    """The fit of what remains, with the pace the run phases measured; at floors when even they overrun."""
    loaded = state.load()
    rows = {r["name"]: r for r in loaded["phases"]}
    done = [n for n, r in rows.items() if r.get("status") == DONE]
    pace = measured_pace(open_storage(run.url), done)
    try:
        fit = make_fit(run, table, label, sizes, rows, calibration_s, pace)
    except PlanOverBudget as e:
        run.echo(f"re-plan: {e}; the phases left run at their floors")
        fit = _floors(run, table, label, sizes, rows, calibration_s, pace)
    run.echo(f"re-plan: measured pace x{pace:.2f} of the estimates; {fmt_hours(fit.total_s())} of "
             f"{run.hours:g} GPU-hours planned")
    show_fit(run, fit, label, title)
    return fit


def _floors(run: Run, table, label, sizes, rows, calibration_s, pace) -> PlanFit:
    """Every phase left at its floor, each with a share of what is left by weight (possibly nothing)."""
    plan = run.plan
    phases, pricer = priced_phases([e.path for e in plan.phases], table, label, sizes)
    fits = phase_fits(plan, phases)
    for f in fits:
        row = rows.get(f.name, {})
        if row.get("status") == DONE:
            f.done = row
            continue
        f.pace = pace
        f.reprice(pricer)
        f.phase.trials = f.min_trials()
        if f.base_epochs():
            f.phase.epoch_scale = (f.min_epochs(plan.fit) + 1e-9) / f.base_epochs()
        f.share_s = f.cost()
    return PlanFit(fits, run.hours, finish_seconds(plan, fits, pricer), calibration_s)


# ------------------------------------------------------------------ running
def plan_dir(url: str | None, name: str) -> Path:
    """Where a plan's generated phase specs, bundle, scores and report go."""
    return runs_root(url) / "_plans" / name


def phase_spec(plan: PlanSpec, name: str, raw: dict, url: str | None) -> tuple[StudySpec, Path]:
    """The fitted spec of a phase, written where the local workers read it; (spec, its file)."""
    path = plan_dir(url, plan.name) / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return parse_spec(raw, source=path), path


def wait_idle(study: optuna.Study, echo) -> None:
    """Until no trial of the phase runs anywhere (workers that follow the plan finish theirs)."""
    from ..run.recovery import settle

    said = False
    while True:
        settle(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        if not said:
            echo(f"waiting for trials of {study.study_name} still running on other workers")
            said = True
        time.sleep(POLL)


def run_phase(run: Run, name: str, row: dict, console) -> tuple[optuna.Study, int]:
    from ..run.launch import supervise
    from ..run.recovery import settle
    from ..run.study import prepare_study
    from ..run.supervisor import Supervisor
    from ..view.trial_log import log_line
    from ..view.watch import watcher

    spec, path = phase_spec(run.plan, name, row["raw"], run.url)
    spec = preflight_study(spec, run.url, run.device, run.gpus)
    storage = open_storage(run.url)
    study = prepare_study(spec, storage)
    settle(study)   # trials left running by a killed run: failed and queued again, resuming their checkpoints
    sup = Supervisor(spec, path, run.url, run.workers, run.gpus, None, None,
                     log=console.log if run.live else log_line)
    return study, supervise(study, sup, watcher(console, run.live))


def run_plan(run: Run, dry_run: bool = False, calibration: Path | None = None,
             sizes: DataSizes | None = None, console=None) -> dict:
    """The whole plan (see the module); returns its final status (``status_json``)."""
    plan = run.plan
    state_check = _stored_state(run)
    if state_check and state_check["plan"].get("state") == FINISHED and not dry_run:
        run.echo(f"plan {plan.name} is done already; see facesearch plan status (another name: runs it again)")
        return status_json(state_check)
    done = {r["name"] for r in state_check["phases"] if r.get("status") == DONE} if state_check else set()
    if dry_run and calibration is not None:   # planning away from the data and the GPUs: price only
        run.echo("dry run from a calibration file: the data and devices are not checked here")
    else:
        preflight_plan(plan, run.url, run.device, run.gpus, warn=run.echo, skip=done)
    label = device_label(plan, run.device, run.workers, run.gpus)
    if calibration is not None:
        table = CalibrationTable.load(calibration)
        label = _only_device(table, label)
    else:
        table = stored_table(open_storage(run.url)) if state_check or not dry_run else _peek_table(run.url)
    calibration_s = state_check["plan"].get("calibration_s", 0.0) if state_check else 0.0
    complete = True
    if label not in table.devices():
        if dry_run:
            raise UserError(f"no calibration for {label} in the storage; run without --dry-run (it calibrates "
                            f"first), or give --calibration FILE")
        limit = plan.calibration_share * run.hours * 3600
        run.echo(f"calibrating {label}: at most {plan.calibration_share:.0%} of the budget "
                 f"({fmt_hours(limit)} GPU-hours)")
        calibration_s, complete = calibrate_here(plan, open_storage(run.url), worker_threads(run.workers, run.gpus),
                                                 limit, run.echo)
        run.echo(f"calibrated in {calibration_s:.0f}s, {calibration_s / (run.hours * 3600):.1%} of the budget")
        table = stored_table(open_storage(run.url))
    sizes = sizes or DataSizes(table.census)
    rows = {r["name"]: r for r in state_check["phases"]} if state_check else None
    try:
        fit = make_fit(run, table, label, sizes, rows, calibration_s)
    except CalibrationError as e:
        if calibration is None and not complete:
            raise CalibrationError(f"{e}; the calibration share ({plan.calibration_share:.0%} of the hours) ran out "
                                   f"first: raise calibration.share in the plan, or run facesearch calibrate "
                                   f"{' '.join(str(p.path) for p in plan.phases)} first") from None
        raise
    except OverBudgetFit as e:
        show_fit(run, e.fit, label, f"plan {plan.name} at its floors")
        raise
    show_fit(run, fit, label, f"plan {plan.name}")
    if dry_run:
        return {}
    state = PlanState(open_storage(run.url), plan.name)
    if state_check is None:
        state.set(name=plan.name, file=str(plan.source.resolve()), signature=plan.signature, hours=run.hours,
                  device=label, order=[e.name for e in plan.phases], state=RUNNING, active=None,
                  calibration_s=calibration_s, started=now())
    else:
        state.set(hours=run.hours, state=RUNNING)
    _store_fit(state, fit)
    from ..view.watch import console as make_console

    console = console or make_console()
    for entry in plan.phases:
        row = {r["name"]: r for r in state.load()["phases"]}[entry.name]
        if row.get("status") == DONE:
            run.echo(f"phase {entry.name}: done before, not run again")
            continue
        if row.get("status") != RUNNING:
            state.set_phase(entry.name, status=RUNNING, started=now(),
                            raw=fitted_raw(read_yaml(entry.path), row["overrides"]))
            row = {r["name"]: r for r in state.load()["phases"]}[entry.name]
        else:
            run.echo(f"phase {entry.name}: resuming")
        state.set(active=entry.name)
        publish_note(state)
        fitted = row["overrides"].get("trials", row["overrides"]["n_trials"])
        most = row["overrides"]["n_trials"]
        upto = f" (up to {most} while its hours last)" if most > fitted else ""
        run.echo(f"phase {entry.name}: {fitted} trial(s){upto} under "
                 f"{row['overrides']['hours']:.3g} GPU-hours")
        study, code = run_phase(run, entry.name, row, console)
        if code:
            run.echo(f"stopped in phase {entry.name}; resume with the same command")
            raise SystemExit(code)
        wait_idle(study, run.echo)
        trials = study.get_trials(deepcopy=False)
        best = best_trial(study)
        state.set_phase(entry.name, status=DONE, ended=now(), spent_s=spent_seconds(trials),
                        trials_run=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
                        best_value=best.value if best else None, best_number=best.number if best else None)
        if entry is not plan.phases[-1]:
            _store_fit(state, refit(run, table, label, sizes, state, calibration_s, f"plan {plan.name} re-planned"))
    state.set(state=FINISHING, active=None)
    started = time.time()
    finished = finish_plan(run, state)
    state.set(state=FINISHED, finish=finished, finish_s=time.time() - started, ended=now())
    publish_note(state)
    return status_json(state.load())


def _store_fit(state: PlanState, fit: PlanFit) -> None:
    for f in fit.fits:
        if not f.done and not f.stuck:
            state.set_phase(f.name, status=PENDING, overrides=f.overrides(), share_s=f.share_s,
                            estimate_s=f.cost())
    publish_note(state)


def _stored_state(run: Run) -> dict | None:
    """The plan's state when the storage has it (refusing one started from another file); reads only."""
    from ..storage import is_database, storage_url

    url = storage_url(run.url)
    if not is_database(url) and not Path(url.removeprefix("journal:")).exists():
        return None
    loaded = PlanState(open_storage(run.url), run.plan.name).load()
    if loaded and loaded["plan"].get("signature") != run.plan.signature:
        raise PlanMismatch(f"plan {run.plan.name!r} in this storage was started from another file "
                           f"({loaded['plan'].get('file')}); rename the plan (name:) or use another --storage")
    return loaded


def _peek_table(url: str | None) -> CalibrationTable:
    from ..storage import is_database, storage_url

    u = storage_url(url)
    if not is_database(u) and not Path(u.removeprefix("journal:")).exists():
        return CalibrationTable()
    return stored_table(open_storage(url))


def _only_device(table: CalibrationTable, label: str) -> str:
    from ..cost.plan import choose_device

    return label if label in table.devices() else choose_device(table, None)


# ------------------------------------------------------------------ finishing
def finish_plan(run: Run, state: PlanState) -> dict:
    """Retrain the winner (fine-tune if asked), export it, score the test list, write the plan's report."""
    from facenet.data.folders import PairList
    from facenet.eval.evaluate import eer, write_scores
    from facenet.export import export_bundle, onnx_available
    from facenet.eval.scoring import score_pairs

    from ..finish.retrain import retrain
    from ..storage import artifact_dir, load_study
    from ..view.analysis import write_analysis
    from .report import report_sections

    plan, url = run.plan, run.url
    storage = open_storage(url)
    out = plan_dir(url, plan.name)
    study = load_study(plan.finish_study, storage, url)
    spec = StudySpec(name=plan.finish_study)
    f = plan.finish
    run.echo(f"finishing: the winner of {plan.finish_study}")
    record = retrain(study, runs_root(url), epochs=f.epochs, finetune_on=f.finetune_on,
                     finetune_epochs=f.finetune_epochs, device=run.device, log=run.echo, progress=run.live,
                     artifacts=artifact_dir(url), reuse=f.reuse)
    result = {"study": plan.finish_study, "trial": record.trial, "run": record.run_dir, "val_eer": record.val_eer}
    if f.export:
        bundle = out / "bundle"
        export_bundle(record.run_dir, bundle, spec.param_cap, {"study": plan.finish_study, "trial": record.trial},
                      onnx_available())
        result["bundle"] = str(bundle)
        config = TrialRecord.of(study.trials[record.trial]).config
        test = Path(f.test) if f.test else Path(config["val_path"]).parent / "test" / "test_pairs.csv"
        if test.is_file():
            pairs = PairList.read(test.parent, test.name)
            scores = score_pairs(bundle, pairs)
            write_scores(out / "test_scores.txt", scores, pairs)
            result["scores"] = str(out / "test_scores.txt")
            result["test_eer"] = round(float(eer(pairs.labels, scores)), 4)
        else:
            run.echo(f"no test list at {test}: set finish.test in the plan to score one")
    if f.report:
        report = out / "report"
        state.set(finish=result)
        write_analysis(storage, report, url, report_sections(storage))
        (report / "phases.md").write_text(f"# plan {plan.name}\n\n" + phases_markdown(state.load()))
        result["report"] = str(report / "analysis.html")
    return result
