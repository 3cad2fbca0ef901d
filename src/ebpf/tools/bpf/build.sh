#!/usr/bin/env bash
# Rebuild the bundled tool programs with clang-19 against a vmlinux.h that `ebpf btf dump` writes.
# Usage: src/ebpf/tools/bpf/build.sh [--check]   (--check: fail if a committed object is stale)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
clang="${CLANG:-clang-19}"
btf="${VMLINUX_BTF:-/sys/kernel/btf/vmlinux}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m ebpf btf dump "$btf" --format c > "$work/vmlinux.h"
status=0
for src in "$here"/*.bpf.c; do
  name="$(basename "$src" .c)"
  "$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 -I"$work" -I"$here" \
    -fdebug-prefix-map="$here"=. -fdebug-prefix-map="$work"=. \
    -c "$src" -o "$work/$name.o"
  "${STRIP:-llvm-strip-19}" -g "$work/$name.o"   # drop DWARF; .BTF and .BTF.ext stay
  if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$work/$name.o" "$here/$name.o"; then echo "stale: $name.o" >&2; status=1; fi
  else
    cp "$work/$name.o" "$here/$name.o"
  fi
done
exit $status
