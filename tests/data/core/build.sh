#!/bin/sh
# Rebuild the CO-RE test objects. Tests never need a compiler: the .o files are committed.
# Requires clang-19 (or set CLANG), libbpf-dev's <bpf/bpf_core_read.h> and, for the
# vmlinux-based objects, bpftool and /sys/kernel/btf/vmlinux (vmlinux.h is generated here
# and not committed).
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
CFLAGS="-g -O2 -Wall -Werror"
"$CLANG" $CFLAGS -target bpfel -c local.c -o local.el.o
"$CLANG" $CFLAGS -target bpfeb -c local.c -o local.eb.o
"$CLANG" $CFLAGS -target bpfel -c shapes.c -o shapes.o
if [ -e tracer.c ] && [ -r /sys/kernel/btf/vmlinux ]; then
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h
	"$CLANG" $CFLAGS -target bpfel -c tracer.c -o tracer.o
	rm -f vmlinux.h
fi
