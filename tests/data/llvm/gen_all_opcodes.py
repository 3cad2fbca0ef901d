"""Write obj/all_opcodes.o: a hand-made BPF object with every valid opcode (see build.sh).

clang never emits some encodings (lddw with a pseudo source, kfunc calls, ld_ind with an
offset); this object lets the tests compare them with llvm-objdump too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "isa"))

from llvm_corpus import make_object, sample_instructions

from ebpf.isa.encoding import encode


def main(out: str) -> None:
    code = encode(sample_instructions())
    Path(out).write_bytes(make_object(code))


if __name__ == "__main__":
    main(sys.argv[1])
