#!/bin/sh
# Rebuild cgroupmaps.o with clang-19 (-O2 -g, little-endian).  `build.sh --check` rebuilds into
# a temporary directory and fails unless the committed object is byte-identical to the rebuilt one.
# The shared steps: ../corpus_build.sh.
OBJS="cgroupmaps"
TARGET=bpfel
. "$(dirname "$0")/../corpus_build.sh"
