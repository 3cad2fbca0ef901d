#!/bin/sh
# Rebuild the user ring buffer test object (userrb.o) with clang-19 from userrb.c, which
# includes only the system's <linux/bpf.h> and libbpf's <bpf/bpf_helpers.h>.
# `build.sh --check` rebuilds into a temporary directory and fails unless the committed
# object is byte-identical to the rebuilt one.
# The shared steps: ../corpus_build.sh.
OBJS="userrb"
TARGET=bpfel
. "$(dirname "$0")/../corpus_build.sh"
