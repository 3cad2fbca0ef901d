// SPDX-License-Identifier: GPL-2.0
/* A static function inside a program section, called by the program of that section: clang
 * resolves the call itself (no relocation). libbpf refuses static functions in program
 * sections; we link it as a subprogram (it is no program of its own). */
#include "common.h"

SEC("xdp")
static __attribute__((noinline)) int add_seven(int x)
{
	return x + 7;
}

SEC("xdp")
int samesec(struct xdp_md *ctx)
{
	return add_seven(ctx->rx_queue_index) & 1 ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
