# Shared body of the small corpus build scripts (tests/data/<corpus>/build.sh), sourced by them
# with OBJS set (and optionally VMLINUX=1, TARGET, CORPUS):
#
#   OBJS="name ..."   sources <name>.c in the corpus directory -> committed <name>.o
#   VMLINUX=1         generate vmlinux.h with this project's BTF dumper (`$PYTHON -m ebpf btf
#                     dump`) from /sys/kernel/btf/vmlinux and define __TARGET_ARCH_x86
#   TARGET            clang's -target (default bpf)
#
# `build.sh` rebuilds the objects in place; `build.sh --check` rebuilds into a temporary
# directory and fails unless every committed object is byte-identical to the rebuilt one.
# clang compiles copies of the sources in a fixed-length temporary directory, never the
# checkout itself: the order of some .BTF types follows clang's memory layout, which the length
# of the paths it is given changes (a clone at another path built other objects).
set -eu
cd "$(dirname "$0")"
here=$(pwd)
CLANG=${CLANG:-clang-19}
PYTHON=${PYTHON:-python3}
TARGET=${TARGET:-bpf}
VMLINUX=${VMLINUX:-0}
check=0
[ "${1:-}" = "--check" ] && check=1

work=$(mktemp -d "/tmp/ebpf-$(basename "$here")-build.XXXXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
cp ./*.c "$work/src/"
defines=""
if [ "$VMLINUX" = 1 ]; then
  "$PYTHON" -m ebpf btf dump /sys/kernel/btf/vmlinux --format c > "$work/src/vmlinux.h"
  defines="-D__TARGET_ARCH_x86"
fi

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
CFLAGS="-O2 -g -Wall $defines -I. -I/usr/include/$multiarch \
  -fdebug-prefix-map=$work/src=. -fmacro-prefix-map=$work/src=. \
  -fno-ident"

out=$work/out
cd "$work/src"
for name in $OBJS; do
  # shellcheck disable=SC2086
  $CLANG $CFLAGS -target "$TARGET" -c "$name.c" -o "$out/$name.o"
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
for name in $OBJS; do
  cp "$out/$name.o" "$here/"
done
