// SPDX-License-Identifier: GPL-2.0
/* Tail calls and maps of maps, as XDP dispatchers use them.
 *
 * `dispatch` tail-calls through a PROG_ARRAY initialised with .values: stage1 -> stage2 ->
 * stage3, each stage stamping the packet and counting in .bss; a packet whose first byte
 * selects a missing slot falls through.  `mim` picks an inner map of an ARRAY_OF_MAPS and a
 * HASH_OF_MAPS (inner maps declared with __array(values, ...) and initialised with .values)
 * from the packet and counts into it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

__u32 stage_hits[4] = {};
__u32 fallthrough = 0;

static __always_inline int stamp(struct xdp_md *ctx, int stage)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;

	if (data + 4 > data_end)
		return -1;
	data[stage] = 0xa0 | stage;
	if (stage < 4)
		stage_hits[stage]++;
	return data[0];
}

int stage1(struct xdp_md *ctx);
int stage2(struct xdp_md *ctx);
int stage3(struct xdp_md *ctx);

/* 0 -> nothing, 1 -> stage1, 2 -> stage2, 3 -> stage3, 4..7 -> nothing */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, int (void *));
} jump SEC(".maps") = {
	.values = { [1] = (void *)&stage1, [2] = (void *)&stage2, [3] = (void *)&stage3 },
};

SEC("xdp")
int stage3(struct xdp_md *ctx)
{
	stamp(ctx, 3);
	return XDP_TX;
}

SEC("xdp")
int stage2(struct xdp_md *ctx)
{
	if (stamp(ctx, 2) < 0)
		return XDP_ABORTED;
	bpf_tail_call(ctx, &jump, 3);
	return XDP_DROP;
}

SEC("xdp")
int stage1(struct xdp_md *ctx)
{
	int first = stamp(ctx, 1);

	if (first < 0)
		return XDP_ABORTED;
	/* first byte 0x11: on to a slot with nothing in it */
	bpf_tail_call(ctx, &jump, first == 0x11 ? 5 : 2);
	fallthrough++;
	return XDP_PASS;
}

SEC("xdp")
int dispatch(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	__u32 slot;

	if (data + 4 > data_end)
		return XDP_DROP;
	stage_hits[0]++;
	slot = data[0] & 7;
	bpf_tail_call(ctx, &jump, slot ? slot : 1);
	fallthrough++;
	return XDP_PASS;
}

struct inner_arr {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
};

struct inner_arr arr_a SEC(".maps"), arr_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_arr);
} outer_arr SEC(".maps") = {
	.values = { &arr_a, [2] = &arr_b },
};

struct inner_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 32);
};

struct inner_hash hash_x SEC(".maps"), hash_y SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_hash);
} outer_hash SEC(".maps") = {
	.values = { [1] = &hash_x, [3] = &hash_y },
};

__u32 mim_misses = 0;

SEC("xdp")
int mim(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	__u32 outer_key, inner_key, one = 1;
	void *inner;
	__u64 *cnt;
	__u32 *hv;

	if (data + 4 > data_end)
		return XDP_DROP;
	outer_key = data[0] & 3;
	inner_key = data[1];
	inner = bpf_map_lookup_elem(&outer_arr, &outer_key);
	if (inner) {
		cnt = bpf_map_lookup_elem(inner, &inner_key);
		if (cnt)
			*cnt += data[2] + 1;
		else
			mim_misses++;
	} else {
		mim_misses += 100;
	}
	inner = bpf_map_lookup_elem(&outer_hash, &outer_key);
	if (!inner)
		return XDP_PASS;
	hv = bpf_map_lookup_elem(inner, &inner_key);
	if (hv)
		__sync_fetch_and_add(hv, data[3]);
	else if (bpf_map_update_elem(inner, &inner_key, &one, BPF_NOEXIST) < 0)
		return XDP_DROP;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
