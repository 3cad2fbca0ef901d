#!/bin/sh
# Rebuild the bpf_timer corpus with clang-19 (-O2 -g -target bpf).  `build.sh --check` rebuilds
# into a temporary directory and fails unless every committed object is byte-identical to the
# rebuilt one.  timer.c includes only the system's UAPI and libbpf headers (no vmlinux.h).
# The shared steps: ../corpus_build.sh.
OBJS="timer"
. "$(dirname "$0")/../corpus_build.sh"
