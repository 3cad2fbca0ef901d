#!/bin/sh
# Rebuild the tunnel test object (bpf_skb_adjust_room encapsulation/decapsulation) with
# clang-19 against the system's UAPI and libbpf headers (no vmlinux.h: the object does not
# depend on the running kernel). `build.sh --check` rebuilds into a temporary directory and
# fails unless the committed object is byte-identical to the rebuilt one.
set -eu
cd "$(dirname "$0")"
here=$(pwd)
CLANG=${CLANG:-clang-19}
check=0
[ "${1:-}" = "--check" ] && check=1

# clang compiles copies of the sources in a fixed-length temporary directory, never the
# checkout itself: the order of some .BTF types follows the length of the paths it is given.
work=$(mktemp -d /tmp/ebpf-encap-build.XXXXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
cp ./*.c "$work/src/"

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# -fdebug-prefix-map / -fmacro-prefix-map: no absolute paths in the object.
CFLAGS="-O2 -g -Wall -I. -I/usr/include/$multiarch \
  -fdebug-prefix-map=$work/src=. -fmacro-prefix-map=$work/src=. \
  -fno-ident"

OBJS="encap"

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
