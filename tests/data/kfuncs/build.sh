#!/bin/sh
# Rebuild the kfunc corpus with clang-19 (-O2 -g -target bpf).  `build.sh --check` rebuilds
# into a temporary directory and fails unless every committed object is byte-identical to the
# rebuilt one.  kfuncs.c includes vmlinux.h, generated here by this project's own BTF dumper
# from /sys/kernel/btf/vmlinux (never committed): the object depends on the running kernel's BTF.
# The shared steps: ../corpus_build.sh.
OBJS="kfuncs"
VMLINUX=1
. "$(dirname "$0")/../corpus_build.sh"
