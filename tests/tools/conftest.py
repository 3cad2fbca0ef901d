"""Tool tests run the real tools on this kernel; each checks that nothing stays attached."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ebpf.attach import link_ids, open_link
from ebpf.errors import SyscallError
from ebpf.kernel.program import Program

TOOL_PROGRAM_PREFIXES = ("execsnoop", "execguard", "opensnoop", "syscount", "biolatency", "xdp_firewall")


def tool_links(prefixes: tuple[str, ...] = TOOL_PROGRAM_PREFIXES) -> set[tuple[int, str]]:
    """(link id, program name) of every link whose program is one of the bundled tools'.

    Other tests (or other processes) may attach links meanwhile, so only the tools' own
    programs, recognised by name, are counted.
    """
    found = set()
    for link_id in link_ids():
        try:
            with open_link(link_id) as link:
                prog_id = link.info().prog_id
            with Program.from_id(prog_id) as prog:
                name = prog.info().name
        except SyscallError:
            continue  # gone meanwhile
        if name.startswith(prefixes):
            found.add((link_id, name))
    return found


@pytest.fixture
def no_leftover_links(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail when the test leaves links of its tools behind that were not there before.

    A test module names its tools' program prefixes in ``TOOL_PREFIXES`` (default: every
    tool), so tests of other tools running at the same time do not count.
    """
    prefixes = getattr(request.module, "TOOL_PREFIXES", TOOL_PROGRAM_PREFIXES)
    before = tool_links(prefixes)
    yield
    assert tool_links(prefixes) - before == set(), "tool links left attached"
