"""The bpf_conformance test suite's data format, for feeding its cases to every runtime.

Pure: no kernel access. See :mod:`ebpf.conformance.datafile` for the ``.data`` format and
:mod:`ebpf.isa.syntax_ubpf` for the assembly syntax of its ``-- asm`` sections.
"""

from __future__ import annotations

from ebpf.conformance.datafile import (
    ENV_VAR,
    ConformanceCase,
    conformance_dir,
    iter_cases,
    parse_data_file,
    parse_data_text,
    program,
)

__all__ = [
    "ENV_VAR",
    "ConformanceCase",
    "conformance_dir",
    "iter_cases",
    "parse_data_file",
    "parse_data_text",
    "program",
]
