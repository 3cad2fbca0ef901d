// SPDX-License-Identifier: GPL-2.0
/* A socket filter (keeps IPv4 TCP), a perf event array and a global counter in .bss. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(__u32));
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
	__uint(map_flags, BPF_F_MMAPABLE);
} totals SEC(".maps");

__u64 accepted;

SEC("socket")
int keep_tcp(struct __sk_buff *skb)
{
	__u8 proto = 0;
	__u32 k = 0;
	__u64 *t;

	if (bpf_skb_load_bytes(skb, offsetof(struct iphdr, protocol), &proto, 1) < 0)
		return 0;
	t = bpf_map_lookup_elem(&totals, &k);
	if (t)
		*t += 1;
	if (proto != IPPROTO_TCP)
		return 0;
	accepted++;
	return skb->len;
}

char _license[] SEC("license") = "Dual MIT/GPL";
