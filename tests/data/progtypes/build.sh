#!/bin/sh
# Rebuild the program-type test objects (flow dissector, sk_lookup, netfilter) with clang-19.
# `build.sh --check` rebuilds into a temporary directory and fails unless every committed
# object is byte-identical to the rebuilt one.
#
# The sources include vmlinux.h, generated here by this project's own BTF dumper from
# /sys/kernel/btf/vmlinux (never committed): the objects depend on the running kernel's BTF.
# The shared steps: ../corpus_build.sh.
OBJS="progtypes"
VMLINUX=1
. "$(dirname "$0")/../corpus_build.sh"
