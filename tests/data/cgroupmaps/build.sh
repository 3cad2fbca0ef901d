#!/bin/sh
# Rebuild cgroupmaps.o with clang-19 (-O2 -g, little-endian).  `build.sh --check` rebuilds into
# a temporary directory and fails unless the committed object is byte-identical to the rebuilt one.
#
# clang compiles a copy of the source in a fixed-length temporary directory, never the checkout
# itself (the order of some .BTF types follows the length of the paths clang is given).
set -eu
cd "$(dirname "$0")"
here=$(pwd)
CLANG=${CLANG:-clang-19}
check=0
[ "${1:-}" = "--check" ] && check=1

work=$(mktemp -d /tmp/ebpf-cgmaps-build.XXXXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
cp ./*.c "$work/src/"

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
CFLAGS="-O2 -g -Wall -I/usr/include/$multiarch \
  -fdebug-prefix-map=$work/src=. -fmacro-prefix-map=$work/src=. -fno-ident"

cd "$work/src"
$CLANG $CFLAGS -target bpfel -c cgroupmaps.c -o "$work/out/cgroupmaps.o"

cd "$here"
if [ $check = 1 ]; then
  if cmp -s "$work/out/cgroupmaps.o" "$here/cgroupmaps.o"; then
    echo "all objects up to date"
    exit 0
  fi
  echo "stale: cgroupmaps.o"
  exit 1
fi
cp "$work/out/cgroupmaps.o" "$here/"
