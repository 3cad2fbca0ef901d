// SPDX-License-Identifier: GPL-2.0
/* Linking: nested static subprograms (called without a relocation inside .text), a global
 * subprogram, a bpf_loop callback that calls a subprogram, and one subprogram shared by two
 * programs. Loadable by libbpf (see samesec.c for what libbpf refuses). */
#include "common.h"

static __attribute__((noinline)) int leaf(int x)
{
	return x * 3;
}

static __attribute__((noinline)) int mid(int x)
{
	return leaf(x) + 1;
}

__attribute__((noinline)) int global_helper(int x)
{
	return x ^ 5;
}

static long loop_cb(__u32 index, void *data)
{
	int *acc = data;

	*acc += leaf(index);
	return 0;
}

static __attribute__((noinline)) int local_in_section(int x)
{
	return x + 7;
}

SEC("xdp")
int entry(struct xdp_md *ctx)
{
	int v = mid(ctx->rx_queue_index);

	v += global_helper(v);
	v += local_in_section(v);
	bpf_loop(4, loop_cb, &v, 0);
	return v & 1 ? XDP_PASS : XDP_DROP;
}

SEC("tc")
int other(struct __sk_buff *skb)
{
	return global_helper(skb->len) & 1;
}

char _license[] SEC("license") = "GPL";
