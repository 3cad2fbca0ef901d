// SPDX-License-Identifier: GPL-2.0
/* The legacy "maps" section (struct bpf_map_def) and a version section. libbpf >= 1.0 no
 * longer loads these; older loaders (and ours) do. */
#include "common.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = 16,
	.max_entries = 4,
	.map_flags = 0,
};

SEC("socket")
int legacy_prog(struct __sk_buff *skb)
{
	__u32 k = 1;
	__u64 *v = bpf_map_lookup_elem(&legacy_hash, &k);
	void *a = bpf_map_lookup_elem(&legacy_array, &k);

	return (v ? *v : 0) + (a ? 1 : 0);
}

char _license[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x060c00;
