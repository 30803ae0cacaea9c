#!/usr/bin/env bash
# The GPU check, on a node with CUDA GPUs and no network (< 8 minutes; everything to stdout,
# one "summary:" line per figure, gathered again at the end).
#   bash benchmarks/gpu-wheels.sh        # once, where pip reaches PyPI: fills .gpu-wheels/ (carry it along)
#   bash benchmarks/gpu.sh               # on the GPU node
#   bash benchmarks/gpu.sh --dry-run     # the same path on CPU with tiny sizes (a minute or two)
# 1. A virtual environment over the node's own Python (its torch, torchvision, numpy and whatever
#    else it has), with pip --no-index --no-deps --no-build-isolation: the wheels of the
#    distributions that Python lacks (every wheel in a dry run, to prove each one installs), then
#    the project. Nothing is written into the node's Python. 2. The GPUs. 3. benchmarks/gpu_speed.py:
#    resnet18 images/s at 112 and 224 px, fp32 (TF32 off, on) NCHW vs bf16 channels_last, real
#    pipeline vs in-memory batches, MFU. 4. studies/quickstart.yaml with one worker per GPU.
# PYTHON picks the interpreter (default python3), GPU_WHEELS the wheel folder; GPU_KIT_TARGET=1
# installs into a plain folder on PYTHONPATH instead of a virtual environment (the fallback where
# the Python has no venv module).
set -euo pipefail
exec 2>&1
cd "$(dirname "$0")/.."
repo=$PWD
dry=0
case ${1:-} in
    --dry-run) dry=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu.sh [--dry-run]"; exit 2 ;;
esac
python=${PYTHON:-python3}
wheels=${GPU_WHEELS:-$repo/.gpu-wheels}
work=$(mktemp -d "${TMPDIR:-/tmp}/facesearch-gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PYTHONPATH=$repo   # this checkout's facenet and search, whatever else is installed
export PIP_ROOT_USER_ACTION=ignore   # root on a node's container is common; nothing goes into its Python

install() {
    echo "== this machine's Python"
    $python -c "import sys, torch, torchvision, numpy; print('python', sys.version.split()[0],
'| torch', torch.__version__, '| torchvision', torchvision.__version__, '| numpy', numpy.__version__,
'| CUDA', torch.version.cuda, '| GPUs visible', torch.cuda.device_count())"
    if ! compgen -G "$wheels/*.whl" > /dev/null; then
        echo "error: no wheels in $wheels; run 'bash benchmarks/gpu-wheels.sh' where pip reaches PyPI" \
             "and carry the folder"
        exit 2
    fi
    py=$work/venv/bin/python
    local wanted into=(--ignore-installed) project=(-e "$repo")
    if [[ -z ${GPU_KIT_TARGET:-} ]] && $python -m venv --system-site-packages --without-pip "$work/venv"; then
        echo "== offline install into a virtual environment over it ($work/venv)"
    else   # no venv module (or GPU_KIT_TARGET set): a plain folder on PYTHONPATH, after the checkout
        echo "== offline install into $work/site, on PYTHONPATH (no virtual environment)"
        py=$python into=(--target "$work/site") project=("$repo")
        export PYTHONPATH=$repo:$work/site
    fi
    mapfile -t wanted < <("$py" - "$wheels" "$dry" <<'PY'
import importlib.metadata as md, pathlib, sys

folder, everything = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
for wheel in sorted(folder.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or everything:
        print(wheel)
    elif have != version:
        print(f"note: this Python has {name} {have}; the project was tested with {version}", file=sys.stderr)
PY
)
    echo "installing ${#wanted[@]} of $(ls "$wheels"/*.whl | wc -l) wheels from $wheels (no index, no deps)"
    if (( ${#wanted[@]} )); then
        PIP_NO_INDEX=1 "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps \
            --no-build-isolation "${into[@]}" "${wanted[@]}"
    fi
    if ! PIP_NO_INDEX=1 "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps \
            --no-build-isolation "${into[@]}" "${project[@]}"; then
        echo "warning: the project did not install (see above); running it from the source tree (PYTHONPATH)"
    fi
    "$py" - "$work" <<'PY'
import importlib, importlib.metadata as md, sys

for dist, module in (("optuna", "optuna"), ("sqlalchemy", "sqlalchemy"), ("alembic", "alembic"),
                     ("colorlog", "colorlog"), ("optuna-dashboard", "optuna_dashboard"), ("typer", "typer"),
                     ("rich", "rich"), ("scikit-learn", "sklearn"), ("facesearch", "search.cli")):
    try:
        path = importlib.import_module(module).__file__
        where = ("wheel folder" if path.startswith(sys.argv[1]) else
                 "source tree" if "site-packages" not in path else "node's own packages")
        print(f"  {dist:<17} {md.version(dist):<10} from the {where}")
    except Exception as e:
        print(f"  {dist:<17} unusable: {type(e).__name__}: {e}")
PY
}

main() {
    local start=$SECONDS
    install
    echo "== GPUs"
    local ngpu
    ngpu=$("$py" -c "import torch; print(torch.cuda.device_count())")
    if (( dry )); then
        echo "dry run: CPU only, tiny sizes ($ngpu GPU(s) visible, not used)"
    elif (( ngpu == 0 )); then
        echo "error: no CUDA GPU visible; 'bash benchmarks/gpu.sh --dry-run' runs the same path on CPU"
        exit 2
    else
        nvidia-smi -L || true
    fi

    echo "== synthetic faces"
    local data=$work/data
    if (( dry )); then set -- 40 6 40; else set -- 200 12 48; fi   # the speed runs upscale them in the cache
    "$py" -m search.cli data synth "$data" --identities "$1" --images-per-identity "$2" --size "$3" --seed 0

    echo "== resnet18 training speed and MFU (benchmarks/gpu_speed.py)"
    local t0=$SECONDS
    "$py" benchmarks/gpu_speed.py --data "$data" $( (( dry )) && echo --dry-run )
    echo "gpu_speed.py took $((SECONDS - t0)) s"

    echo "== quickstart study, one worker per GPU"
    local args
    if (( dry )); then
        args=(--workers 1 --n-trials 2)
    else
        args=(--gpus "$(seq -s, 0 $((ngpu - 1)))" --timeout 100)
    fi
    t0=$SECONDS
    FACESEARCH_DATA=$data FACESEARCH_RUNS=$work/runs \
        "$py" -m search.cli study run studies/quickstart.yaml "${args[@]}" --storage "$work/study.journal"
    "$py" - "$work/study.journal" "$((SECONDS - t0))" "${args[*]}" <<'PY'
import sys

import optuna
from optuna.trial import TrialState

from search.storage import open_storage

study = optuna.load_study(study_name="quickstart", storage=open_storage(sys.argv[1]))
count = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
done = [t for t in study.trials if t.state == TrialState.COMPLETE]
best = (f"best val EER {study.best_value:.2f}% (trial {study.best_trial.number})" if done
        else "no complete trial")
print(f"summary: quickstart study ({sys.argv[3]}): {len(study.trials)} trials ({count[TrialState.COMPLETE]} "
      f"complete, {count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed) in {sys.argv[2]} s, "
      f"{best}")
PY
    echo "== summary ($((SECONDS - start)) s in all)"
}

main | tee "$work/log"
grep '^summary:' "$work/log"
