#!/bin/sh
# Rebuild the checked-in test objects and their llvm-objdump listings (golden files).
# --mcpu=v4: the listing style of ebpf.isa.format_instruction (w registers for sub-64-bit loads).
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
OBJDUMP=${OBJDUMP:-llvm-objdump-19}
for endian in el eb; do
	"$CLANG" -O2 -target bpf$endian -c objects.c -o objects.bpf$endian.o
	"$OBJDUMP" -d --mcpu=v4 objects.bpf$endian.o >objects.bpf$endian.objdump.txt
done
