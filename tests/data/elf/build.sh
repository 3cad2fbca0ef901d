#!/bin/sh
# Rebuild the ELF test corpus with clang-19 (-O2 -g), little-endian (*.o) and for some
# sources big-endian (*.be.o).  `build.sh --check` rebuilds into a temporary directory and
# fails unless every committed object is byte-identical to the rebuilt one.
#
# tracer.c includes vmlinux.h, generated here from /sys/kernel/btf/vmlinux (never committed);
# its object therefore depends on the kernel's BTF, the others only on the system headers.
set -eu
cd "$(dirname "$0")"
here=$(pwd)
CLANG=${CLANG:-clang-19}
check=0
[ "${1:-}" = "--check" ] && check=1

# clang compiles copies of the sources in a fixed-length temporary directory, never the
# checkout itself: the order of some .BTF types follows clang's memory layout, which the
# length of the paths it is given changes (a clone at another path built a different tracer.o).
work=$(mktemp -d /tmp/ebpf-elf-build.XXXXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
cp ./*.c ./*.h "$work/src/"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$work/src/vmlinux.h"

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# -fdebug-prefix-map / -fmacro-prefix-map: no absolute paths in the objects.
CFLAGS="-O2 -g -Wall -Wno-unused-function -D__TARGET_ARCH_x86 \
  -I. -I/usr/include/$multiarch \
  -fdebug-prefix-map=$work/src=. -fmacro-prefix-map=$work/src=. \
  -fno-ident"

LE="xdp_fw tc_cls socket_filter legacy_maps tailcall map_in_map tracer sections subprogs samesec struct_ops"
BE="xdp_fw tc_cls map_in_map legacy_maps subprogs"

out=$work/out
cd "$work/src"
for name in $LE; do
  $CLANG $CFLAGS -target bpfel -c "$name.c" -o "$out/$name.o"
done
for name in $BE; do
  $CLANG $CFLAGS -target bpfeb -c "$name.c" -o "$out/$name.be.o"
done

# one object without -g: no BTF (legacy maps, variables from symbols)
$CLANG $(echo "$CFLAGS" | sed 's/ -g / /') -target bpfel -c nobtf.c -o "$out/nobtf.o"

# libbpf's static linker: two objects into one (sections merged, BTF deduplicated)
bpftool gen object "$out/linked.o" "$out/xdp_fw.o" "$out/tailcall.o"

cd "$here"
if [ $check = 1 ]; then
  status=0
  cmp -s "$out/linked.o" "$here/linked.o" || { echo "stale: linked.o"; status=1; }
  cmp -s "$out/nobtf.o" "$here/nobtf.o" || { echo "stale: nobtf.o"; status=1; }
  for name in $LE; do
    cmp -s "$out/$name.o" "$here/$name.o" || { echo "stale: $name.o"; status=1; }
  done
  for name in $BE; do
    cmp -s "$out/$name.be.o" "$here/$name.be.o" || { echo "stale: $name.be.o"; status=1; }
  done
  [ $status = 0 ] && echo "all objects up to date"
  exit $status
fi
cp "$out"/*.o "$here/"
