#!/bin/sh
# Rebuild the bpf_timer corpus with clang-19 (-O2 -g -target bpf).  `build.sh --check` rebuilds
# into a temporary directory and fails unless every committed object is byte-identical to the
# rebuilt one.  timer.c includes only the system's UAPI and libbpf headers (no vmlinux.h).
set -eu
cd "$(dirname "$0")"
here=$(pwd)
CLANG=${CLANG:-clang-19}
check=0
[ "${1:-}" = "--check" ] && check=1

# clang compiles copies of the sources in a fixed-length temporary directory, never the
# checkout itself: the order of some .BTF types follows clang's memory layout, which the
# length of the paths it is given changes.
work=$(mktemp -d /tmp/ebpf-timer-build.XXXXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
cp ./*.c "$work/src/"

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
CFLAGS="-O2 -g -Wall -I. -I/usr/include/$multiarch \
  -fdebug-prefix-map=$work/src=. -fmacro-prefix-map=$work/src=. \
  -fno-ident"

OBJS="timer"

out=$work/out
cd "$work/src"
for name in $OBJS; do
  $CLANG $CFLAGS -target bpf -c "$name.c" -o "$out/$name.o"
done

cd "$here"
if [ $check = 1 ]; then
  status=0
  for name in $OBJS; do
    cmp -s "$out/$name.o" "$here/$name.o" || { echo "stale: $name.o"; status=1; }
  done
  [ $status = 0 ] && echo "all objects up to date"
  exit $status
fi
cp "$out"/*.o "$here/"
