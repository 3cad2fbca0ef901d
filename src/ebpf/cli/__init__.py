"""CLI layer: the ``ebpf`` command (click + rich), in the spirit of bpftool and llvm-objdump.

Rule 1: CLI modules only parse arguments, call the library and format output; no ISA,
ELF or VM logic lives here.

Rule 2: one design for every subcommand. Output is stable plain text when stdout is not a
terminal (rich styling only on a TTY, or with ``--color always``), and ``--json`` prints one
JSON document on stdout instead.

Rule 3: a library error (:class:`ebpf.errors.BPFError`) becomes one line on stderr,
``error: <message>``, and exit status 1 (with ``--json``, also ``{"error": {...}}`` on
stdout). Usage errors exit with status 2 (click's convention). No tracebacks for user errors.

Rule 4: start-up stays light: subcommand modules are imported on demand, and each command
imports the heavy parts of the library (VM, kernel layer, pyelftools, rich) when it runs.

Commands: ``asm``, ``disasm``, ``run``, ``demo``, ``version`` (see ``ebpf --help``).
"""

from __future__ import annotations

__all__: list[str] = []
