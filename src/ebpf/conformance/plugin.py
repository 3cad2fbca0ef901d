"""``ebpf-conformance-plugin``: the plugin the public bpf_conformance runner starts per test.

Core layer plus stdio: pure, no kernel access. Plain argparse, lean imports: it starts once per
test.

The protocol (bpf_conformance's ``runner``):

* stdin: the program as space-separated hex bytes (instructions, or an ELF object with ``--elf``);
* ``argv[1]``: the input memory as space-separated hex bytes, when the test has memory; the
  runner's ``--plugin_options`` follow (possibly as one space-separated argument);
* for these tests r1 = the memory and r2 = its length; uBPF's test helpers are registered
  (0 gather_bytes, 1 memfrob, 2 no_op, 3 sqrti, 4 strcmp_ext, 5 unwind);
* stdout: r0 in hex; on failure a non-zero exit status and the error text on stderr.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence

__all__ = ["main", "parse_hex", "run_plugin"]


def parse_hex(text: str) -> bytes:
    """Space/newline-separated hex bytes (``"b7 00 01"``, ``"0xb7"`` and ``"b70001"`` too)."""
    out = bytearray()
    for token in text.replace(",", " ").split():
        token = token.removeprefix("0x").removeprefix("0X")
        if len(token) % 2:
            token = "0" + token
        out += bytes.fromhex(token)
    return bytes(out)


def _elf_text(data: bytes) -> bytes:
    """The first non-empty executable section of an ELF object (relocations are not applied)."""
    from elftools.common.exceptions import ELFError as PyELFError
    from elftools.elf.elffile import ELFFile

    from ebpf.errors import ELFError

    try:
        elf = ELFFile(io.BytesIO(data))
        for section in elf.iter_sections():
            if section["sh_flags"] & 0x4 and section["sh_size"]:  # SHF_EXECINSTR
                return bytes(section.data())
    except (PyELFError, ValueError, KeyError, IndexError) as err:
        raise ELFError(f"not a valid ELF object: {err}", source="<stdin>") from err
    raise ELFError("the ELF object has no executable section", source="<stdin>")


def run_plugin(
    program_hex: str,
    memory_hex: str = "",
    *,
    engine: str = "interp",
    elf: bool = False,
    max_insns: int | None = None,
) -> int:
    """Run one test as the plugin does and return r0 (64 bits).

    Raises:
        BPFError: invalid program, run-time fault.
    """
    from ebpf.isa.program import Program
    from ebpf.vm import DEFAULT_MAX_INSNS, create_engine, ubpf_test_helpers

    code = parse_hex(program_hex)
    if elf:
        code = _elf_text(code)
    program = Program.from_bytes(code, source="<stdin>")
    vm = create_engine(program, engine, helpers=ubpf_test_helpers(), max_insns=max_insns or DEFAULT_MAX_INSNS)
    return vm.run(parse_hex(memory_hex)).retval


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebpf-conformance-plugin`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    memory = ""
    if args and not args[0].lstrip().startswith("-"):
        memory = args.pop(0)
    # The runner may pass all plugin options as one argument: split them.
    options = [word for arg in args for word in arg.split()]
    parser = argparse.ArgumentParser(prog="ebpf-conformance-plugin", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="interp", help="execution engine (default: interp)")
    parser.add_argument("--elf", action="store_true", help="stdin holds an ELF object, not raw instructions")
    parser.add_argument("--max-insns", type=int, default=None, help="instruction budget")
    opts, _unknown = parser.parse_known_args(options)

    from ebpf.errors import BPFError

    try:
        retval = run_plugin(
            sys.stdin.read(), memory, engine=opts.engine, elf=opts.elf, max_insns=opts.max_insns
        )
    except (BPFError, ValueError) as err:
        sys.stderr.write(f"{err}\n")
        return 1
    sys.stdout.write(f"{retval:x}\n")
    return 0


def plugin_main() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())


if __name__ == "__main__":
    plugin_main()
