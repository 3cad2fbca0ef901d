// SPDX-License-Identifier: GPL-2.0
/* A tc ingress firewall / classifier.
 *
 * Source addresses are matched against an LPM trie of CIDRs (deny -> TC_ACT_SHOT, with a
 * per-rule hit counter).  Allowed TCP traffic to port 8080 is redirected to port 80 in place
 * (bpf_skb_store_bytes + bpf_l4_csum_replace) and its TTL decremented (bpf_l3_csum_replace).
 * Packets are classified into tc_index / mark / priority from a DSCP table, and per-protocol
 * byte counts live in a hash keyed by (protocol, direction).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_HLEN 14
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define BPF_F_PSEUDO_HDR_FLAG (1ULL << 4)

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_TTL_OFF (IP_OFF + offsetof(struct iphdr, ttl))

struct cidr_key {
	__u32 prefixlen;
	__u32 addr;
};

struct rule {
	__u32 action;	/* TC_ACT_* */
	__u32 class_id;
	__u64 hits;
};

struct proto_key {
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct cidr_key);
	__type(value, struct rule);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct proto_key);
	__type(value, __u64);
	__uint(max_entries, 64);
} proto_bytes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64);
} dscp_class SEC(".maps");

__u64 rewritten = 0;
__u64 shot = 0;

static __always_inline void account(struct __sk_buff *skb, __u8 proto)
{
	struct proto_key k = { .proto = proto, .dir = skb->ingress_ifindex != 0 };
	__u64 *v = bpf_map_lookup_elem(&proto_bytes, &k), one = skb->len;

	if (v)
		__sync_fetch_and_add(v, skb->len);
	else
		bpf_map_update_elem(&proto_bytes, &k, &one, BPF_NOEXIST);
}

SEC("tc")
int tc_fw(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr ip;
	struct cidr_key key = { .prefixlen = 32 };
	struct rule *r;
	__u32 dscp, *cls;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, IP_OFF, &ip, sizeof(ip)) < 0)
		return TC_ACT_SHOT;
	if (ip.version != 4 || ip.ihl < 5)
		return TC_ACT_SHOT;

	account(skb, ip.protocol);

	key.addr = ip.saddr;
	r = bpf_map_lookup_elem(&rules, &key);
	if (r) {
		__sync_fetch_and_add(&r->hits, 1);
		if (r->action == TC_ACT_SHOT) {
			shot++;
			return TC_ACT_SHOT;
		}
		skb->mark = r->class_id;
	}

	dscp = ip.tos >> 2;
	cls = bpf_map_lookup_elem(&dscp_class, &dscp);
	if (cls && *cls) {
		skb->tc_index = *cls & 0xffff;
		skb->priority = *cls;
	}

	if (ip.protocol == IPPROTO_TCP && !(ip.frag_off & bpf_htons(0x1fff))) {
		__u32 l4 = IP_OFF + ip.ihl * 4;
		__u16 dport, new_port = bpf_htons(80);

		if (bpf_skb_load_bytes(skb, l4 + offsetof(struct tcphdr, dest), &dport, 2) < 0)
			return TC_ACT_OK;
		if (dport == bpf_htons(8080)) {
			if (bpf_l4_csum_replace(skb, l4 + offsetof(struct tcphdr, check), dport, new_port,
						sizeof(new_port)) < 0)
				return TC_ACT_SHOT;
			if (bpf_skb_store_bytes(skb, l4 + offsetof(struct tcphdr, dest), &new_port,
						sizeof(new_port), 0) < 0)
				return TC_ACT_SHOT;

			/* TTL lives in a 16-bit word with the protocol */
			__u16 old_word = ((__u16 *)&ip)[4];
			__u8 ttl = ip.ttl - 1;
			if (bpf_skb_store_bytes(skb, IP_TTL_OFF, &ttl, 1, 0) < 0)
				return TC_ACT_SHOT;
			__u16 new_word;
			if (bpf_skb_load_bytes(skb, IP_TTL_OFF, &new_word, 2) < 0)
				return TC_ACT_SHOT;
			if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_word, new_word, 2) < 0)
				return TC_ACT_SHOT;
			rewritten++;
		}
	}
	return TC_ACT_OK;
}

/* An egress classifier on the same maps: only counts and stamps the skb. */
SEC("tc")
int tc_stamp(struct __sk_buff *skb)
{
	__u8 proto = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP))
		bpf_skb_load_bytes(skb, IP_OFF + offsetof(struct iphdr, protocol), &proto, 1);
	account(skb, proto);
	skb->cb[0] = skb->len;
	skb->cb[1] = skb->mark;
	skb->cb[4] = skb->priority ^ 0x5a5a;
	skb->mark = skb->hash ? 1 : 2;
	return skb->len > 100 ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
