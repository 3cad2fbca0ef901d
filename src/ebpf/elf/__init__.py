"""BPF ELF object files: ``load_collection_spec`` and libbpf's section-name table. Core layer. Pure.

::

    from ebpf import elf
    spec = elf.load_collection_spec("xdp_fw.o")
    elf.section_type("tracepoint/syscalls/sys_enter_execve")

Reading uses pyelftools; nothing here touches the kernel.
"""

from __future__ import annotations

from ebpf.elf.loader import load_collection_spec
from ebpf.elf.sections import SECTION_DEFS, SectionDef, SectionType, section_type

__all__ = ["SECTION_DEFS", "SectionDef", "SectionType", "load_collection_spec", "section_type"]
