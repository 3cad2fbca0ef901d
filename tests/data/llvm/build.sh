#!/bin/sh
# Build the llvm-objdump corpus for tests/isa/test_syntax_llvm_corpus.py.
#
#   src/NAME.c  ->  obj/NAME-CPU[-eb].o               clang-19 -O2 -target bpfel|bpfeb -mcpu=CPU
#                   obj/NAME-CPU[-eb].objdump.txt     llvm-objdump-19 -d -r --mcpu=v4
#                   obj/NAME-CPU[-eb].objdump-v1.txt  llvm-objdump-19 -d -r  (cpus v1, v2 only)
#   gen_all_opcodes.py -> obj/all_opcodes.o (+ .objdump.txt): every valid opcode
#
# Each source names its cpus and targets in "// cpus: ..." and "// targets: ..." lines
# (targets default to bpfel). The objects and listings are committed so that the tests run
# without clang; rerun this script after changing a source and commit the results.
set -eu

CLANG=${CLANG:-clang-19}
OBJDUMP=${OBJDUMP:-llvm-objdump-19}
PYTHON=${PYTHON:-python3}

cd "$(dirname "$0")"
mkdir -p obj
rm -f obj/*.o obj/*.txt

listing() {  # listing OBJECT OUTPUT [OBJDUMP-ARGS...]: run in obj/ so the header names the bare file
	_object=$1 _listing=$2
	shift 2
	(cd obj && "$OBJDUMP" -d -r "$@" "$_object") >"obj/$_listing"
}

for src in src/*.c; do
	name=$(basename "$src" .c)
	cpus=$(sed -n 's|^// cpus: ||p' "$src")
	targets=$(sed -n 's|^// targets: ||p' "$src")
	for target in ${targets:-bpfel}; do
		suffix=""
		[ "$target" = bpfeb ] && suffix="-eb"
		for cpu in $cpus; do
			out="$name-$cpu$suffix"
			"$CLANG" -O2 -Wall -Werror -target "$target" -mcpu="$cpu" -c "$src" -o "obj/$out.o"
			listing "$out.o" "$out.objdump.txt" --mcpu=v4
			case $cpu in
			v1 | v2) listing "$out.o" "$out.objdump-v1.txt" ;;
			esac
		done
	done
done

"$PYTHON" gen_all_opcodes.py obj/all_opcodes.o
listing all_opcodes.o all_opcodes.objdump.txt --mcpu=v4
