// SPDX-License-Identifier: GPL-2.0
/* Map-in-map: ARRAY_OF_MAPS and HASH_OF_MAPS with inner definitions and initial .values. */
#include "common.h"

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 8);
};

struct inner_array inner_one SEC(".maps");
struct inner_array inner_two SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} inner_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer_array SEC(".maps") = {
	.values = {
		[0] = &inner_one,
		[3] = &inner_two,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__type(key, __u32);
		__type(value, __u64);
		__uint(max_entries, 16);
	});
} outer_hash SEC(".maps") = {
	.values = {
		[1] = (void *)&inner_hash,
	},
};

SEC("xdp")
int mim_lookup(struct xdp_md *ctx)
{
	__u32 k = 0, *v;
	__u64 *w;
	void *inner = bpf_map_lookup_elem(&outer_array, &k);

	if (!inner)
		return XDP_PASS;
	v = bpf_map_lookup_elem(inner, &k);
	if (v)
		*v += 1;
	k = 1;
	inner = bpf_map_lookup_elem(&outer_hash, &k);
	if (!inner)
		return XDP_PASS;
	w = bpf_map_lookup_elem(inner, &k);
	if (w)
		*w += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
