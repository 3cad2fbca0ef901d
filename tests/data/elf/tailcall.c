// SPDX-License-Identifier: GPL-2.0
/* Tail calls through a PROG_ARRAY whose slots are filled from .values. */
#include "common.h"

int hits[3];

SEC("xdp")
int tail_a(struct xdp_md *ctx)
{
	hits[0]++;
	return XDP_PASS;
}

SEC("xdp")
int tail_b(struct xdp_md *ctx)
{
	hits[1]++;
	return XDP_DROP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, int (void *));
} jump_table SEC(".maps") = {
	.values = {
		[0] = (void *)&tail_a,
		[2] = (void *)&tail_b,
	},
};

SEC("xdp")
int tail_entry(struct xdp_md *ctx)
{
	__u32 idx = ctx->rx_queue_index;

	hits[2]++;
	bpf_tail_call(ctx, &jump_table, idx);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "GPL";
