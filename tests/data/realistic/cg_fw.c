// SPDX-License-Identifier: GPL-2.0
/* Per-cgroup traffic policy (cgroup_skb ingress/egress, as systemd's IP accounting and
 * container firewalls do) and a tc "action" program, all on the skb test run path.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct acct {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct acct);
	__uint(max_entries, 2);
} accounting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 64);
} blocked_dst SEC(".maps");

static __always_inline void account(__u32 dir, __u32 len)
{
	struct acct *a = bpf_map_lookup_elem(&accounting, &dir);

	if (a) {
		__sync_fetch_and_add(&a->packets, 1);
		__sync_fetch_and_add(&a->bytes, len);
	}
}

SEC("cgroup_skb/egress")
int cg_egress(struct __sk_buff *skb)
{
	struct iphdr ip;

	account(1, skb->len);
	if (skb->protocol != bpf_htons(0x0800))
		return 1;
	/* cgroup skb programs see the packet from the network header */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		return 1;
	if (bpf_map_lookup_elem(&blocked_dst, &ip.daddr))
		return 0;
	return 1;
}

SEC("cgroup_skb/ingress")
int cg_ingress(struct __sk_buff *skb)
{
	account(0, skb->len);
	return skb->len > 1000 ? 0 : 1;
}

SEC("action")
int act_mark(struct __sk_buff *skb)
{
	skb->mark = 0xace;
	skb->tc_classid = 0x10001;
	return 3; /* TC_ACT_RECLASSIFY */
}

char LICENSE[] SEC("license") = "GPL";
