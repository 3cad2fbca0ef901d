// SPDX-License-Identifier: GPL-2.0
/* xdp_firewall: drop packets by source prefix (LPM tries for IPv4 and IPv6), count per rule. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_RULES 1024
/* Counter slots after the rules. */
#define SLOT_PASSED (MAX_RULES + 0)    /* IPv4/IPv6 packets no rule matched */
#define SLOT_NON_IP (MAX_RULES + 1)    /* ARP and every other non-IP frame (passed) */
#define SLOT_TRUNCATED (MAX_RULES + 2) /* too short for its Ethernet/VLAN/IP header (passed) */
#define NR_SLOTS (MAX_RULES + 3)

#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

const volatile __u32 monitor = 0; /* 1: count matches but pass them (XDP_PASS) */

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct rule_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_RULES);
	__type(key, struct lpm_v4_key);
	__type(value, __u32); /* rule index */
} fw_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_RULES);
	__type(key, struct lpm_v6_key);
	__type(value, __u32); /* rule index */
} fw_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_SLOTS);
	__type(key, __u32);
	__type(value, struct rule_counter);
} counters SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline void count(__u32 slot, __u64 bytes)
{
	struct rule_counter *c = bpf_map_lookup_elem(&counters, &slot);

	if (c) {
		c->packets += 1; /* per-CPU value: no other CPU writes it */
		c->bytes += bytes;
	}
}

static __always_inline int verdict(__u32 *rule, __u64 bytes)
{
	if (!rule) {
		count(SLOT_PASSED, bytes);
		return XDP_PASS;
	}
	count(*rule < MAX_RULES ? *rule : SLOT_PASSED, bytes);
	return monitor ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__u16 proto;

	if (l3 > data_end) {
		count(SLOT_TRUNCATED, bytes);
		return XDP_PASS;
	}
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_tag *tag = l3;

		if ((void *)(tag + 1) > data_end) {
			count(SLOT_TRUNCATED, bytes);
			return XDP_PASS;
		}
		proto = tag->proto;
		l3 = tag + 1;
	}
	if (proto == bpf_htons(ETH_P_IPV4)) {
		struct iphdr *ip = l3;
		struct lpm_v4_key key = {.prefixlen = 32};

		if ((void *)(ip + 1) > data_end) {
			count(SLOT_TRUNCATED, bytes);
			return XDP_PASS;
		}
		__builtin_memcpy(key.addr, &ip->saddr, sizeof(key.addr));
		return verdict(bpf_map_lookup_elem(&fw_v4, &key), bytes);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		struct lpm_v6_key key = {.prefixlen = 128};

		if ((void *)(ip6 + 1) > data_end) {
			count(SLOT_TRUNCATED, bytes);
			return XDP_PASS;
		}
		__builtin_memcpy(key.addr, &ip6->saddr, sizeof(key.addr));
		return verdict(bpf_map_lookup_elem(&fw_v6, &key), bytes);
	}
	count(SLOT_NON_IP, bytes);
	return XDP_PASS;
}
