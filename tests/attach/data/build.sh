#!/bin/sh
# Rebuild the committed BPF objects of the attach tests (clang >= 15 and libbpf-dev headers).
set -e
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
ARCH=$(uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
$CLANG -g -O2 -target bpf -D__TARGET_ARCH_$ARCH -I/usr/include/$(uname -m)-linux-gnu \
    -c libbpf_probes.bpf.c -o libbpf_probes.bpf.o
