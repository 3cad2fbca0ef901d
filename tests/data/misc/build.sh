#!/bin/sh
# Rebuild misc.o (the programs of tests/differential/test_helpers_misc_kernel.py) with clang-19.
# `build.sh --check` rebuilds into a temporary directory and fails unless the committed object
# is byte-identical to the rebuilt one. The source includes only the system's linux/bpf.h and
# libbpf's bpf_helpers.h (no vmlinux.h): the object does not depend on the running kernel.
# The shared steps: ../corpus_build.sh.
OBJS="misc"
TARGET=bpfel
. "$(dirname "$0")/../corpus_build.sh"
