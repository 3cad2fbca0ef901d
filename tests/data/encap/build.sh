#!/bin/sh
# Rebuild the tunnel test object (bpf_skb_adjust_room encapsulation/decapsulation) with
# clang-19 against the system's UAPI and libbpf headers (no vmlinux.h: the object does not
# depend on the running kernel). `build.sh --check` rebuilds into a temporary directory and
# fails unless the committed object is byte-identical to the rebuilt one.
# The shared steps: ../corpus_build.sh.
OBJS="encap"
. "$(dirname "$0")/../corpus_build.sh"
