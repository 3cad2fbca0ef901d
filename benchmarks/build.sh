#!/usr/bin/env bash
# Rebuild the benchmark objects (obj/*.o) and inputs (inputs/*.in) from src/.
#
#   benchmarks/build.sh            rebuild in place (commit the results)
#   benchmarks/build.sh --check    rebuild into a temporary directory and fail if
#                                  anything differs from what is committed
#
# Compiler: $CLANG (default clang-19), always with -O2 -target bpf -mcpu=v3 -c.
# Inputs: src/mkinput.py (deterministic xorshift stream), one <name>.in per program.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
clang="${CLANG:-clang-19}"
python="${PYTHON:-python3}"
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
if [ $# -ne 0 ]; then echo "usage: $0 [--check]" >&2; exit 2; fi

if [ "$check" = 1 ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
else
  out="$here"
fi
mkdir -p "$out/obj" "$out/inputs"

for src in "$here"/src/*.c; do
  name="$(basename "$src" .c)"
  "$clang" -O2 -target bpf -mcpu=v3 -c "$src" -o "$out/obj/$name.o"
done
"$python" "$here/src/mkinput.py" "$out/inputs"

if [ "$check" = 1 ]; then
  status=0
  for kind in obj inputs; do
    if ! diff -r "$here/$kind" "$out/$kind" >/dev/null; then
      echo "benchmarks/$kind differs from a fresh build (run benchmarks/build.sh and commit):" >&2
      diff -rq "$here/$kind" "$out/$kind" >&2 || true
      status=1
    fi
  done
  exit "$status"
fi
echo "built $(ls "$here"/obj/*.o | wc -l) objects and $(ls "$here"/inputs/*.in | wc -l) inputs in $here"
