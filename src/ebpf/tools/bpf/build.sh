#!/usr/bin/env bash
# Rebuild the bundled tool programs with clang-19 against a vmlinux.h that `ebpf btf dump` writes.
# Usage: src/ebpf/tools/bpf/build.sh [--check]   (--check: fail if a committed object is stale)
#
# clang compiles copies of the sources in a fixed-length temporary directory, never the
# checkout itself: the order of some .BTF types follows clang's memory layout, which the
# length of the paths it is given changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
clang="${CLANG:-clang-19}"
btf="${VMLINUX_BTF:-/sys/kernel/btf/vmlinux}"
work="$(mktemp -d /tmp/ebpf-tools-build.XXXXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
cp "$here"/*.bpf.c "$here"/*.h "$work/src/"
"${PYTHON:-python}" -m ebpf btf dump "$btf" --format c > "$work/src/vmlinux.h"
cd "$work/src"
status=0
for src in *.bpf.c; do
  name="$(basename "$src" .c)"
  "$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 -I. \
    -fdebug-prefix-map="$work/src"=. -c "$src" -o "$work/out/$name.o"
  "${STRIP:-llvm-strip-19}" -g "$work/out/$name.o"   # drop DWARF; .BTF and .BTF.ext stay
  if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$work/out/$name.o" "$here/$name.o"; then echo "stale: $name.o" >&2; status=1; fi
  else
    cp "$work/out/$name.o" "$here/$name.o"
  fi
done
exit $status
