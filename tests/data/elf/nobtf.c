// SPDX-License-Identifier: GPL-2.0
/* Built without -g: no BTF, so variables come from symbols and maps from the legacy section. */
#include "common.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
	unsigned int inner_map_idx;
	unsigned int numa_node;
};

struct bpf_map_def SEC("maps") counts = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = 4,
	.value_size = 8,
	.max_entries = 2,
	.numa_node = 0,
};

__u32 limit = 100;
const volatile __u64 scale = 3;
__u64 total;

static __attribute__((noinline)) __u64 bump(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (!v)
		return 0;
	*v += scale;
	return *v;
}

SEC("socket")
int count_packets(struct __sk_buff *skb)
{
	total += bump(skb->len > limit);
	return 0;
}

char _license[] SEC("license") = "GPL";
