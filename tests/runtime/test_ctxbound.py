"""max_ctx_offset: the context bytes a program touches, as the verifier records them."""

from __future__ import annotations

import pytest

from ebpf.isa import assemble
from ebpf.runtime._ctxbound import max_ctx_offset


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("r0 = 0\nexit", 0),
        ("r0 = *(u32 *)(r1 + 8)\nexit", 12),
        ("r6 = r1\nr0 = *(u64 *)(r6 + 16)\nexit", 24),
        ("*(u64 *)(r10 - 8) = r1\nr1 = 0\nr3 = *(u64 *)(r10 - 8)\n*(u16 *)(r3 + 30) = 1\nexit", 32),
        ("r2 = r1\ncall 5\nr0 = *(u32 *)(r2 + 40)\nexit", 0),  # r2 clobbered by the helper call
        ("r6 = r1\nr6 += 8\nr0 = *(u32 *)(r6 + 0)\nexit", 0),  # a modified ctx pointer is not ctx
        ("if r2 > 3 goto x\nr0 = *(u8 *)(r1 + 3)\nexit\nx:\nr0 = *(u64 *)(r1 + 48)\nexit", 56),
        ("r3 = r1\ncall f\nexit\nf:\nr0 = *(u32 *)(r3 + 4)\nexit", 8),
        ("r3 = r1\ncall f\nexit\nf:\nr6 = r1\nr0 = *(u32 *)(r6 + 4)\nexit", 8),
    ],
)
def test_bound(text: str, bound: int) -> None:
    assert max_ctx_offset(assemble(text).ops()) == bound
