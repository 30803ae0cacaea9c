"""The ``facesearch`` command line.

User errors (bad paths, bad YAML, unknown names, unreachable storage) end in one line
on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Tune face-embedding training with Optuna studies.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Data sets: synthesise faces.", no_args_is_help=True)
study_app = typer.Typer(help="Run and inspect Optuna studies.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")
STORAGE_HELP = "Optuna storage: a journal file path (default runs/facesearch.journal, or $FACESEARCH_STORAGE), " \
               "sqlite:///FILE, postgresql://... or mysql://..."
DEBUG = False


def echo(msg: str) -> None:
    typer.echo(msg)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    global DEBUG
    DEBUG = DEBUG or debug


# ------------------------------------------------------------------ data
@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Folder to write train1/, train2/, val/, test/ into."),
    identities: int = typer.Option(200, help="Identities in all splits together."),
    images_per_identity: int = typer.Option(20, help="Images of each identity."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
) -> None:
    """Write synthetic faces in the course layout (identity folders and pair lists)."""
    from facenet.synth import synthesize

    summary = synthesize(out, identities=identities, images_per_identity=images_per_identity, size=size, seed=seed,
                         progress=sys.stderr.isatty())
    echo(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


@data_app.command("check")
def data_check(
    root: Path = typer.Argument(..., help="A data set (train1/, val/ ...), a training or pair-list folder."),
    resolution: list[int] = typer.Option([224], "--resolution", "-r", help="Crop size (repeatable)."),
    keep_checkpoints: int = typer.Option(3, help="Trials whose checkpoints a study keeps."),
    model: str = typer.Option("resnet18", help="Model whose checkpoint size is counted."),
    cache_dir: str = typer.Option("", help="Cache folder (default: $FACESEARCH_CACHE, ~/.cache/facesearch)."),
) -> None:
    """Identities, images, unreadable files, pair lists; projected cache, checkpoint and free disk sizes."""
    from rich.console import Console
    from rich.table import Table

    from facenet.config import TrainConfig
    from facenet.datacheck import check_data

    report = check_data(root, resolution, cache_dir, keep_checkpoints=keep_checkpoints,
                        config=TrainConfig(model=model))
    table = Table("set", "check", "value", title=f"data check of {root}")
    for row in report.rows:
        table.add_row(*row)
    Console(width=max(120, Console().width)).print(table)
    report.raise_if_unusable()


# ------------------------------------------------------------------ train / score
@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML of TrainConfig fields."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a field: key=value (repeatable)."),
    initial_model: Optional[Path] = typer.Option(None, help="Start from these weights (mismatched keys skipped)."),
) -> None:
    """Train one model (ResNet18 + softmax + Adam + StepLR unless told otherwise)."""
    from facenet import TrainConfig, fit

    cfg = TrainConfig.from_file(config, set_) if config else TrainConfig().override(set_)
    if initial_model:
        cfg = cfg.replace(initial_model=str(initial_model))
    result = fit(cfg, progress=sys.stderr.isatty())
    echo(f"best val EER {result.best_val_eer:.2f}% at epoch {result.best_epoch}; "
         f"{result.params:,} parameters; {result.seconds:.0f}s on {result.device}; run folder {result.run_dir}")


@app.command()
def score(
    model: Path = typer.Argument(..., help="A checkpoint (best.pt), a run folder, or an export bundle."),
    pairs: Path = typer.Option(..., help="Pair list: label,path1,path2 per line."),
    root: Optional[Path] = typer.Option(None, help="Folder the pair paths are relative to (default: the list's)."),
    out: Path = typer.Option(..., help="Score file to write (score,label,path1,path2)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    batch: int = typer.Option(256, help="Images per forward pass."),
) -> None:
    """Score a pair list with a trained model: the submission file, and the EER when labels are real."""
    from facenet.data import PairList
    from facenet.evaluate import Verifier, eer, write_scores
    from facenet.export import load_embedder
    from facenet.train import resolve_device

    dev = resolve_device(device)
    net, resolution = load_embedder(model, dev)
    pair_list = PairList.read(root or pairs.parent, pairs)
    scores = Verifier(pair_list, resolution).scores(net, dev, batch)
    write_scores(out, scores, pair_list)
    msg = f"wrote {len(scores)} scores to {out}"
    if len(set(pair_list.labels.tolist())) == 2:
        msg += f"; EER {eer(pair_list.labels, scores):.2f}%"
    echo(msg)


@app.command()
def params(
    n_out: str = typer.Option("512", help="Embedding sizes, comma-separated."),
    cap: str = typer.Option("11.5M", help="Parameter cap, e.g. 11.5M or 11500000."),
) -> None:
    """Parameter count of every registered architecture against the cap (meta device, no memory)."""
    from rich.console import Console
    from rich.table import Table

    from facenet.models import param_table
    from search.spec import parse_count

    limit = parse_count(cap)
    rows = param_table(tuple(int(n) for n in n_out.split(",")), limit)
    table = Table(title=f"parameters by the cap rule (cap {limit:,})")
    keys = [k for k in rows[0] if k not in ("params", "fits")]
    for k in keys:
        table.add_column(k)
    table.add_column("params", justify="right")
    table.add_column("fits")
    for r in rows:
        table.add_row(*[str(r[k]) if r[k] is not None else "" for k in keys], f"{r['params']:,}",
                      "[green]yes[/]" if r["fits"] else "[red]no[/]")
    Console(width=120).print(table)


# ------------------------------------------------------------------ studies
def _load_spec(path: Path, url: str | None):
    """The spec with its ``from:`` resolved against the storage."""
    from search.spec import apply_from, load_spec
    from search.storage import open_storage

    spec = load_spec(path)
    return apply_from(spec, open_storage(url)) if spec.from_ else spec


def _check_cap(spec) -> None:
    from search.space import smallest_param_count
    from search.storage import StorageError

    count, point = smallest_param_count(spec)
    if count > spec.param_cap:
        raise StorageError(f"{spec.source}: no configuration in the space fits the {spec.param_cap:,} parameter cap; "
                           f"the smallest is {count:,} ({', '.join(f'{k}={v}' for k, v in point.items())})")


@study_app.command("run")
def study_run(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml", help="Study spec."),
    workers: int = typer.Option(1, help="Worker processes on this machine."),
    gpus: Optional[str] = typer.Option(None, help="GPU indices, e.g. 0,1,2,3: one worker per GPU (overrides --workers)."),
    n_trials: Optional[int] = typer.Option(None, help="Trials in the study in all (default: the spec's budget)."),
    timeout: Optional[float] = typer.Option(None, help="Seconds after which no new trial starts."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """Launch N workers on a study and watch it until its budget is spent."""
    from rich.live import Live

    from search.live import progress_view
    from search.status import console as make_console, trials_table
    from search.storage import open_storage
    from search.workers import Supervisor, prepare_study, settle

    spec = _load_spec(spec_path, storage)
    _check_cap(spec)
    gpu_list = [int(g) for g in gpus.split(",")] if gpus else None
    if gpu_list:
        _check_gpus(gpu_list)
        workers = len(gpu_list)
    store = open_storage(storage)
    study = prepare_study(spec, store)
    settle(study)
    console = make_console()
    sup = Supervisor(spec, spec_path, storage, workers, gpu_list, n_trials, timeout, log=console.log)
    start = time.time()
    with Live(progress_view(study, sup, start), console=console, refresh_per_second=1, transient=False) as live:
        code = sup.run(study, on_tick=lambda: live.update(progress_view(study, sup, start)))
    console.print(trials_table(study))
    if code:
        console.print(f"stopped; nothing is left running. Resume with: facesearch study run {spec_path}"
                      + (f" --storage {storage}" if storage else ""))
        raise typer.Exit(code)
    console.print(f"done in {time.time() - start:.0f}s; best: facesearch best {spec.name}"
                  + (f" --storage {storage}" if storage else ""))


def _check_gpus(gpus: list[int]) -> None:
    import torch

    from facenet.errors import ConfigError

    n = torch.cuda.device_count()
    bad = [g for g in gpus if g < 0 or g >= n]
    if bad:
        raise ConfigError(f"--gpus {','.join(map(str, gpus))}: GPU {bad[0]} does not exist "
                          f"({n} visible{': 0..' + str(n - 1) if n else ''})")


@app.command()
def worker(
    spec_path: Path = typer.Argument(..., metavar="STUDY.yaml", help="Study spec (the same file on every machine)."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    worker_id: int = typer.Option(0, help="Distinct per worker: offsets the sampler seed."),
    n_trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many trials."),
    timeout: Optional[float] = typer.Option(None, help="Seconds after which no new trial starts."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Join a study as one worker (run one per GPU on any machine that reaches the storage)."""
    from search.workers import run_worker

    spec = _load_spec(spec_path, storage)
    ran = run_worker(spec, storage, worker_id, n_trials, timeout, device, log=lambda m: echo(m))
    echo(f"worker {worker_id}: ran {ran} trial(s); budget spent")


@app.command()
def studies(storage: Optional[str] = typer.Option(None, help=STORAGE_HELP)) -> None:
    """List the studies in a storage with their trial counts and best EER."""
    import optuna
    from rich.table import Table

    from search.status import best_trial, console, counts
    from search.storage import open_storage

    store = open_storage(storage)
    table = Table(title="studies")
    for col in ("study", "trials", "complete", "pruned", "running", "failed", "best val EER %", "best #"):
        table.add_column(col)
    for summary in sorted(optuna.get_all_study_summaries(store, include_best_trial=False), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        trials = study.get_trials(deepcopy=False)
        c = counts(trials)
        best = best_trial(study)
        table.add_row(summary.study_name, str(len(trials)), str(c["complete"]), str(c["pruned"] + c["pruned (cap)"]),
                      str(c["running"]), str(c["failed"]), f"{best.value:.2f}" if best else "",
                      str(best.number) if best else "")
    console().print(table)


@study_app.command("status")
def study_status(
    name: str = typer.Argument(..., help="Study name."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    last: Optional[int] = typer.Option(None, help="Show only the last N trials."),
) -> None:
    """A table of the study's trials (state, EER, params, parameter count, prune reason) and the time left."""
    from search.status import console as make_console, counts, fmt_seconds, time_left, trials_table
    from search.storage import load_study, open_storage
    from search.workers import SPEC

    study = load_study(name, open_storage(storage), storage)
    trials = study.get_trials(deepcopy=False)
    console = make_console()
    console.print(trials_table(study, limit=last))
    n_trials = json.loads(study.user_attrs.get(SPEC, "{}")).get("n_trials")
    running = counts(trials)["running"]
    console.print(", ".join(f"{k} {v}" for k, v in counts(trials).items() if v)
                  + (f"; budget {n_trials}; about {fmt_seconds(time_left(trials, n_trials, running or 1))} left"
                     if n_trials else ""))


@app.command()
def best(
    name: str = typer.Argument(..., help="Study name."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """The best trial's val EER, hyper-parameters and parameter count."""
    from search.status import best_trial
    from search.storage import StorageError, load_study, open_storage

    study = load_study(name, open_storage(storage), storage)
    t = best_trial(study)
    if t is None:
        raise StorageError(f"study {name!r} has no complete trial yet; wait, or see: facesearch study status {name}")
    echo(f"best trial {t.number} of study {name}: val EER {t.value:.2f}%")
    echo(f"  parameters {t.user_attrs.get('param_count', 0):,} (best epoch {t.user_attrs.get('best_epoch', '?')})")
    for k, v in t.params.items():
        echo(f"  {k}: {v}")


# ------------------------------------------------------------------ finishing
@app.command()
def retrain(
    name: str = typer.Argument(..., help="Study name."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: the trial's)."),
    resolution: Optional[int] = typer.Option(None, help="Input resolution (default: the trial's)."),
    finetune_on: Optional[str] = typer.Option(None, help="Then fine-tune on this set (folder, or e.g. train2)."),
    finetune_epochs: Optional[int] = typer.Option(None, help="Fine-tuning epochs (default: --epochs)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Retrain the best trial at full budget (optionally pre-train then fine-tune); the study records the run."""
    from search.finish import retrain as do_retrain
    from search.storage import load_study, open_storage
    from search.workers import runs_root

    study = load_study(name, open_storage(storage), storage)
    record = do_retrain(study, runs_root(storage), epochs, resolution, finetune_on, finetune_epochs, device,
                        progress=sys.stderr.isatty())
    echo(f"retrained trial {record['trial']}: val EER {record['val_eer']:.2f}% "
         f"(search: {record['search_val_eer']:.2f}%); model {record['best_pt']}")
    echo(f"next: facesearch export {record['run_dir']} --out bundle/")


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder (or its best.pt)."),
    out: Path = typer.Option(..., help="Bundle folder to write."),
    cap: str = typer.Option("11.5M", help="Parameter cap for the model card."),
) -> None:
    """Write a self-contained bundle: TorchScript, ONNX (checked under onnxruntime), config.json, model card."""
    from facenet.export import export_bundle
    from search.spec import parse_count

    retrain_info = Path(run if Path(run).is_dir() else Path(run).parent) / "retrain.json"
    provenance = {}
    if retrain_info.exists():
        info = json.loads(retrain_info.read_text())
        provenance = {"study": info["study"], "trial": info["trial"]}
    card = export_bundle(run, out, parse_count(cap), provenance)
    echo(f"wrote {out}: model.ts, model.onnx, config.json, MODEL_CARD.md "
         f"({card['parameters']:,} parameters, val EER {card['val_eer']:.2f}%, ONNX max diff {card['onnx_max_abs_diff']:.1e})")


@app.command()
def report(
    name: str = typer.Argument(..., help="Study name."),
    out: Path = typer.Option(..., help="Folder for report.html, figures and the experiment tables."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """HTML report: Optuna's figures, EER by architecture and loss, ROC/DET of the best run, trial tables."""
    from search.report import write_report
    from search.storage import load_study, open_storage

    path = write_report(load_study(name, open_storage(storage), storage), out)
    echo(f"wrote {path} (figures and trials.csv / trials.md beside it)")


@app.command()
def dashboard(
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to bind; localhost unless you mean to share it."),
    port: int = typer.Option(8080, help="Port."),
) -> None:
    """Serve optuna-dashboard over the study storage (with the artifact folder)."""
    from search.dashboard import serve_dashboard
    from search.storage import artifact_dir, open_storage, storage_url

    open_storage(storage)   # a clear error now rather than inside the dashboard
    echo(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    serve_dashboard(storage_url(storage), host, port, artifact_dir(storage))


@app.command()
def quickstart(
    out: Path = typer.Option(Path("quickstart"), help="Folder for data, study, runs, bundle, scores, report."),
    workers: int = typer.Option(2, help="Worker processes."),
) -> None:
    """The main job on synthetic faces: synthesise, search, retrain, export, score, report (minutes on 2 CPUs)."""
    from search.quickstart import run_quickstart

    r = run_quickstart(out, workers, live=sys.stderr.isatty())
    t = r["timings"]
    echo("")
    echo(f"quickstart done in {t['total']:.0f}s (data {t['data']:.0f}s, study {t['study']:.0f}s, retrain {t['retrain']:.0f}s)")
    echo(f"  best trial {r['best_trial']}: search val EER {r['search_val_eer']:.2f}%, retrained val EER "
         f"{r['val_eer']:.2f}%, test EER {r['test_eer']:.2f}%")
    for key, label in (("data", "synthetic faces"), ("storage", "study storage"), ("run", "retrained run"),
                       ("bundle", "export bundle"), ("scores", "test scores"), ("report", "report")):
        echo(f"  {label:16s} {r[key]}")
    echo(f"  dashboard        facesearch dashboard --storage {r['storage']}")


def main() -> None:
    global DEBUG
    if "--debug" in sys.argv[1:]:
        DEBUG = True
        sys.argv.remove("--debug")
    try:
        app()
    except Exception as e:
        from facenet.errors import UserError

        if DEBUG or not isinstance(e, UserError):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
