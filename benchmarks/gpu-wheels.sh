#!/usr/bin/env bash
# Where pip reaches PyPI: download the pure-Python wheels that benchmarks/gpu.sh installs on an
# offline GPU node (which brings its own Python, torch, torchvision and numpy), the project's build
# backend (setuptools) among them. Carry the folder along with the repository; it is ignored by git and
# stays under 64 MiB. pip's own settings apply: PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR takes the wheels from
# a folder instead (the test suite's run, from `python benchmarks/offline_wheels.py --repack DIR`).
#   bash benchmarks/gpu-wheels.sh [FOLDER]        # default: .gpu-wheels/
# The list is the project's dependencies followed through their requirements, at the versions
# installed here (benchmarks/offline_wheels.py). Distributions without a pure wheel (scikit-learn,
# Pillow, PyYAML, ...) are named in FOLDER/node-must-have.txt: the node has to provide them.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.gpu-wheels}
limit=$((64 * 1024 * 1024))
python=${PYTHON:-python3}
pyver=$($python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
# pure wheels only (py3-none-any), whatever the platform of this machine
pure=(--no-deps --only-binary=:all: --platform any --implementation py --abi none --python-version "$pyver")

rm -rf "$dest"
mkdir -p "$dest"
$python benchmarks/offline_wheels.py > "$dest/wanted.txt"
$python benchmarks/offline_wheels.py --build > "$dest/build.txt"   # gpu.sh installs these always
: > "$dest/node-must-have.txt"
fetch() { $python -m pip download -q "${pure[@]}" --dest "$dest" "$@" > "$dest/.pip.log" 2>&1; }
pure_here=() compiled_here=()
while read -r req note; do
    if [[ -n $note ]]; then compiled_here+=("$req"); else pure_here+=("$req"); fi
done < "$dest/wanted.txt"
# what is pure here has a pure wheel: one pip call (one each only to name a failure); a distribution
# compiled here may have one too (SQLAlchemy), or not (scikit-learn): one call each
if ! fetch "${pure_here[@]}"; then
    for req in "${pure_here[@]}"; do fetch "$req" || echo "$req" >> "$dest/node-must-have.txt"; done
fi
for req in "${compiled_here[@]}"; do fetch "$req" || echo "$req" >> "$dest/node-must-have.txt"; done
rm -f "$dest/.pip.log"
other=$(find "$dest" -name '*.whl' ! -name '*-none-any.whl')
if [[ -n $other ]]; then
    echo "error: not pure-Python wheels: $other" >&2
    exit 1
fi
bytes=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
echo "$(ls "$dest"/*.whl | wc -l) wheels, $((bytes / 1024 / 1024)) MiB in $dest/ (limit 64 MiB)"
echo "the node must provide (compiled, no pure wheel): $(tr '\n' ' ' < "$dest/node-must-have.txt")"
if (( bytes >= limit )); then
    echo "error: $dest is $bytes bytes, over the 64 MiB a carried folder may hold" >&2
    exit 1
fi
echo "next: carry this checkout with $dest/ to the GPU node; 'bash benchmarks/gpu.sh --help' says the rest"
