#!/usr/bin/env bash
# The GPU check, on a node with CUDA GPUs and no network (< 8 minutes; everything to stdout and to
# gpu-kit.log, one "summary:" line per figure, gathered again at the end). --help prints the one screen
# a GPU user needs: what to carry, the command, what to send back.
#   bash benchmarks/gpu-wheels.sh               # once, where pip reaches PyPI: fills .gpu-wheels/ (carry it)
#   bash benchmarks/gpu.sh                      # on the GPU node
#   bash benchmarks/gpu.sh --dry-run            # the same path on CPU with tiny sizes (a few minutes)
#   bash benchmarks/gpu.sh --dry-run --quick    # fewer points and one trial (the test suite's run)
# 1. An environment that sees the node's own Python (its torch, torchvision, numpy and whatever else it
#    has), filled with pip --no-index --no-deps --no-build-isolation: the wheels of the distributions that
#    Python lacks and the build backend (every wheel in a dry run, to prove each one installs), then the
#    project. Nothing is written into the node's Python. The environment is a virtual environment over
#    it; over a virtual environment's Python (torch installed in a venv) the new one also sees the outer
#    one's site-packages, since a venv made from a venv's Python sees only the base Python's. Where no
#    venv can be made, or it does not import the node's torch, or with GPU_KIT_TARGET=1: a plain folder
#    on PYTHONPATH. 2. The GPUs. 3. benchmarks/gpu_speed.py: resnet18 images/s at 112 and 224 px, fp32
#    (TF32 off, on) NCHW vs bf16 channels_last, real pipeline vs in-memory batches, MFU.
#    4. studies/quickstart.yaml with one worker per GPU.
# PYTHON picks the interpreter (default python3), GPU_WHEELS the wheel folder, GPU_KIT_LOG the log file.
set -euo pipefail
exec 2>&1
cd "$(dirname "$0")/.."
repo=$PWD
wheels=${GPU_WHEELS:-$repo/.gpu-wheels}
log=${GPU_KIT_LOG:-$repo/gpu-kit.log}

screen() {
    cat <<EOF
The facesearch GPU check: one command on a node with CUDA GPUs, no network needed, < 8 minutes.
  carry  this checkout with its .gpu-wheels/ folder (made by 'bash benchmarks/gpu-wheels.sh' where pip
         reaches PyPI; 20-30 MiB). The node brings Python >= 3.11 with torch, torchvision, numpy and the
         compiled packages named in .gpu-wheels/node-must-have.txt (scikit-learn, Pillow, PyYAML, ...).
  run    PYTHON=/path/to/python-with-torch bash benchmarks/gpu.sh
         (a base Python, a venv's or a conda env's; nothing is installed into it)
  send   the 'summary:' lines printed at the end (also in gpu-kit.log);
  back   if it stopped with an error, the whole gpu-kit.log.
  try    bash benchmarks/gpu.sh --dry-run   (the same path on CPU with tiny sizes, a few minutes)
EOF
}

dry=0 quick=0
for arg in "$@"; do
    case $arg in
        --dry-run) dry=1 ;;
        --quick) quick=1 ;;
        -h|--help) screen; exit 0 ;;
        *) echo "usage: bash benchmarks/gpu.sh [--dry-run [--quick]]   (--help: what to carry, run, send back)"
           exit 2 ;;
    esac
done
if (( quick && !dry )); then
    echo "usage: --quick goes with --dry-run: bash benchmarks/gpu.sh --dry-run --quick"
    exit 2
fi
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/facesearch-gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PYTHONPATH=$repo   # this checkout's facenet and search, whatever else is installed
export PIP_ROOT_USER_ACTION=ignore   # root on a node's container is common; nothing goes into its Python

# pip offline, the wheel folder's files only (a node's pip.conf or environment may name indexes, links or
# constraints of its own)
pip_offline() {
    env -u PIP_CONSTRAINT -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 \
        "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-build-isolation \
        "${into[@]}" "$@"
}

# A virtual environment at $work/venv that sees what $python sees; fails where none can be made or
# where it does not import the node's torch.
make_venv() {
    "$python" -m venv --system-site-packages --without-pip "$work/venv" > "$work/venv.log" 2>&1 || return 1
    local outer inner
    # A venv made from a venv's Python inherits the *base* Python's site-packages: add the outer venv's
    # (site.addsitedir also runs its .pth files: editable installs, conda's paths).
    outer=$("$python" -c 'import site, sys
if sys.prefix != sys.base_prefix:
    print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages()))')
    if [[ -n $outer ]]; then
        inner=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        echo "$outer" > "$inner/_outer_venv.pth"
        echo "  ($python is a virtual environment's: the new one also sees its site-packages)"
    fi
    [[ $("$work/venv/bin/python" -c 'import torch; print(torch.__file__)' 2>> "$work/venv.log") == "$torch_file" ]]
}

install() {
    echo "== this machine's Python"
    local seen   # one torch import (seconds on a node's shared file system): the line shown, then torch's file
    seen=$($python -c "import sys, torch, torchvision, numpy; print('python', sys.version.split()[0],
'| torch', torch.__version__, '| torchvision', torchvision.__version__, '| numpy', numpy.__version__,
'| CUDA', torch.version.cuda, '| GPUs visible', torch.cuda.device_count(),
'| a virtual environment' if sys.prefix != sys.base_prefix else '| not a virtual environment'); print(torch.__file__)")
    echo "${seen%$'\n'*}"
    torch_file=${seen##*$'\n'}
    if ! compgen -G "$wheels/*.whl" > /dev/null; then
        echo "error: no wheels in $wheels; run 'bash benchmarks/gpu-wheels.sh' where pip reaches PyPI" \
             "and carry the folder"
        exit 2
    fi
    py=$work/venv/bin/python into=(--ignore-installed) project=(-e "$repo")
    if [[ -n ${GPU_KIT_TARGET:-} ]]; then
        echo "== GPU_KIT_TARGET is set: no virtual environment"
        py=$python
    elif make_venv; then
        echo "== offline install into a virtual environment over it ($work/venv)"
    else
        echo "== no virtual environment over it imports its torch: $(tail -1 "$work/venv.log" 2>/dev/null)"
        py=$python
    fi
    if [[ $py == "$python" ]]; then
        echo "== offline install into $work/site, on PYTHONPATH after this checkout"
        into=(--target "$work/site") project=(--upgrade "$repo")   # --upgrade: its bin/ replaces the wheels' (no warning)
        export PYTHONPATH=$repo:$work/site
    fi
    mapfile -t wanted < <("$py" - "$wheels" "$dry" <<'PY'
import importlib.metadata as md, pathlib, re, sys

folder, everything = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
build = folder / "build.txt"   # the project's build backend: always the folder's (the tested version)
build = set(build.read_text().split()) if build.exists() else set()
for wheel in sorted(folder.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or everything or re.sub(r"[-_.]+", "-", name).lower() in build:
        print(wheel)
    elif have != version:
        print(f"note: this Python has {name} {have}; the project was tested with {version}", file=sys.stderr)
PY
)
    echo "installing ${#wanted[@]} of $(ls "$wheels"/*.whl | wc -l) wheels from $wheels (no index, no deps)"
    if (( ${#wanted[@]} )); then
        pip_offline "${wanted[@]}"
    fi
    if ! pip_offline "${project[@]}"; then
        echo "error: the project did not install offline (pip install ${project[*]} with $py; see above)"
        exit 1
    fi
    "$py" - "$work" <<'PY'
import importlib, importlib.metadata as md, sys

bad = []
for dist, module in (("torch", "torch"), ("optuna", "optuna"), ("sqlalchemy", "sqlalchemy"),
                     ("alembic", "alembic"), ("colorlog", "colorlog"), ("optuna-dashboard", "optuna_dashboard"),
                     ("typer", "typer"), ("rich", "rich"), ("scikit-learn", "sklearn"),
                     ("facesearch", "search.cli")):
    try:
        path = importlib.import_module(module).__file__
        where = ("wheel folder" if path.startswith(sys.argv[1]) else
                 "source tree" if "site-packages" not in path else "node's own packages")
        print(f"  {dist:<17} {md.version(dist):<10} from the {where}")
    except Exception as e:
        if dist == "optuna-dashboard":   # an extra: only `facesearch dashboard` needs it
            print(f"  {dist:<17} not installed (optional: facesearch dashboard)")
            continue
        print(f"  {dist:<17} unusable: {type(e).__name__}: {e}")
        bad.append(dist)
if bad:
    sys.exit(f"error: the check needs {', '.join(bad)}: the node's Python must have them "
             "(see .gpu-wheels/node-must-have.txt)")
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
    "$py" -m search.cli data synth --out "$data" --identities "$1" --images-per-identity "$2" --size "$3" --seed 0

    echo "== resnet18 training speed and MFU (benchmarks/gpu_speed.py)"
    local t0=$SECONDS speed=()
    (( dry )) && speed+=(--dry-run)
    (( quick )) && speed+=(--quick)
    "$py" benchmarks/gpu_speed.py --data "$data" "${speed[@]}"
    echo "gpu_speed.py took $((SECONDS - t0)) s"

    echo "== quickstart study, one worker per GPU"
    local args
    if (( dry )); then
        args=(--workers 1 --n-trials $((2 - quick)))
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

main | tee "$log"
grep '^summary:' "$log"
echo "== done: send back the 'summary:' lines above (they are also in $log)"
