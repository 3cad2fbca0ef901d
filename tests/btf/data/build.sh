#!/bin/sh
# Rebuild the BTF test objects (both byte orders). Tests never need a compiler: the .o files
# are committed. Requires clang-19 (or set CLANG).
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
"$CLANG" -g -O2 -target bpfel -c kinds.c -o kinds.el.o
"$CLANG" -g -O2 -target bpfeb -c kinds.c -o kinds.eb.o
"$CLANG" -g -O2 -target bpfel -c vars.c -o vars.el.o
"$CLANG" -g -O2 -target bpfeb -c vars.c -o vars.eb.o
