#!/usr/bin/env bash
# The wheels for the GPU rehearsal (issue 19). The lent GPU machine (CPython 3.12, x86-64) has no
# network and lacks snakemake, mlflow and jsonschema, so the set pinned in
# benchmarks/gpu_wheels.txt travels as wheels in .whl/: name .whl in the device call's carry, and
# benchmarks/gpu_rehearsal.sh installs them there into /tmp/site. Run here, with network, from
# anywhere in the repository:
#
#   bash benchmarks/gpu_wheels.sh           # download into .whl/, drop stale wheels, check size
#   bash benchmarks/gpu_wheels.sh --check   # the same, then prove the set complete and working
#                                           # (benchmarks/gpu_wheels_check.py)
#
# Knobs: PYTHON (whose pip downloads; default python3), LIMIT_MIB (default 50: the transfer
# holds 64 MiB with the repository), PY312 (a Python 3.12 for the check's smoke test).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PYTHON:-python3}
LIMIT_MIB=${LIMIT_MIB:-50}
REQ=benchmarks/gpu_wheels.txt
DEST=.whl

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"

mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Lines marked `# sdist` have no wheel on PyPI: their pure-Python wheel is built here.
grep -vE '#[[:space:]]*sdist' "$REQ" >"$tmp/binary.txt"
sdists=$(grep -E '^[^#]+#[[:space:]]*sdist' "$REQ" | cut -d '#' -f 1 | tr -d ' ' || true)
quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }  # local mirrors

echo "== downloading the wheels of $REQ into $DEST/ (CPython 3.12, manylinux x86-64)"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" -r "$tmp/binary.txt" 2> >(quiet)
for pin in $sdists; do
    name=${pin%%==*}
    version=${pin#*==}
    stem=$(echo "$name" | tr 'A-Z.-' 'a-z__')-$version-
    if ! ls "$DEST" | tr 'A-Z' 'a-z' | grep -q "^$stem"; then
        echo "== building the wheel of $pin (sdist only)"
        "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-binary "$name" \
            -w "$tmp/built" "$pin" 2> >(quiet)
        for whl in "$tmp"/built/*.whl; do
            case "$whl" in
                *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$whl" "$DEST/" ;;
                *) echo "$whl: not a pure-Python wheel" >&2; exit 1 ;;
            esac
        done
    fi
done
"$PY" benchmarks/gpu_wheels_check.py --prune --files-only

bytes=$(du -cb "$DEST"/*.whl | tail -n 1 | cut -f 1)
count=$(find "$DEST" -maxdepth 1 -type f -name '*.whl' | wc -l)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "== $count wheels, $bytes bytes ($mib MiB; limit $LIMIT_MIB MiB)"
if [ "$bytes" -gt $(( LIMIT_MIB * 1048576 )) ]; then
    echo "too large: the transfer to the GPU machine holds 64 MiB with the repository" >&2
    exit 1
fi

if [ "${1:-}" = --check ]; then
    "$PY" benchmarks/gpu_wheels_check.py
fi
