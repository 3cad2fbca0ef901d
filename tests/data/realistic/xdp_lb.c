// SPDX-License-Identifier: GPL-2.0
/* An XDP layer-4 load balancer in the usual libbpf style.
 *
 * Packets to the virtual IP (vip4 / vip6 in .rodata) and port are hashed on their 5-tuple into
 * one of `nbackends` backends; the choice is remembered in an LRU connection table.  The
 * destination MAC and IP are rewritten, the IPv4 header checksum is fixed with bpf_csum_diff
 * and the TCP/UDP checksum incrementally, and the frame is bounced out with XDP_TX.
 * Everything else passes; malformed packets are dropped.  Per-CPU counters record verdicts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define MAX_BACKENDS 8

struct backend {
	__u8 mac[6];
	__u16 flags;
	__u32 ip4;
	__u32 ip6[4];
};

struct conn_key {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct conn_val {
	__u32 backend;
	__u32 packets;
};

struct counters {
	__u64 packets;
	__u64 bytes;
};

enum { STAT_TX, STAT_PASS, STAT_DROP, STAT_HIT, STAT_MISS, STAT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, MAX_BACKENDS);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct conn_key);
	__type(value, struct conn_val);
	__uint(max_entries, 1024);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counters);
	__uint(max_entries, STAT_MAX);
} stats SEC(".maps");

const volatile __u32 nbackends = 2;
const volatile __u32 vip4 = 0;		/* network order */
const volatile __u32 vip6[4] = {};	/* network order */
const volatile __u16 vip_port = 0;	/* network order; 0: any port */
const volatile __u32 hash_seed = 0x9e3779b9;

static __always_inline int count(int what, struct xdp_md *ctx, int verdict)
{
	__u32 key = what;
	struct counters *c = bpf_map_lookup_elem(&stats, &key);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return verdict;
}

static __always_inline __u32 mix(__u32 h, __u32 v)
{
	h ^= v;
	h *= 0x01000193;
	h ^= h >> 15;
	return h;
}

static __always_inline __u32 flow_hash(const struct conn_key *k)
{
	__u32 h = hash_seed;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		h = mix(h, k->src[i]);
		h = mix(h, k->dst[i]);
	}
	h = mix(h, ((__u32)k->sport << 16) | k->dport);
	return mix(h, k->proto);
}

static __always_inline __u16 csum_fold(__u64 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return ~csum;
}

/* RFC 1624: HC' = ~(~HC + ~m + m') */
static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u64 c = (__u16)~*sum;

	c += (__u16)~from + (__u16)~(from >> 16);
	c += (to & 0xffff) + (to >> 16);
	*sum = csum_fold(c);
}

static __always_inline struct backend *pick(struct conn_key *key, __u32 *out_idx)
{
	struct conn_val *cv = bpf_map_lookup_elem(&conns, key);
	__u32 idx, n = nbackends;

	if (cv) {
		idx = cv->backend;
		__sync_fetch_and_add(&cv->packets, 1);
	} else {
		if (n == 0 || n > MAX_BACKENDS)
			return NULL;
		idx = flow_hash(key) % n;
		struct conn_val nv = { .backend = idx, .packets = 1 };
		bpf_map_update_elem(&conns, key, &nv, BPF_NOEXIST);
	}
	*out_idx = idx;
	return bpf_map_lookup_elem(&backends, &idx);
}

static __always_inline void swap_macs(struct ethhdr *eth, const struct backend *be)
{
	__builtin_memcpy(eth->h_source, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, be->mac, 6);
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct conn_key key = {};
	struct backend *be;
	__u16 proto, *l4sum = NULL;
	void *l4;
	__u32 idx, hit;

	if ((void *)(eth + 1) > data_end)
		return count(STAT_DROP, ctx, XDP_DROP);
	proto = eth->h_proto;
	l4 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l4;

		if ((void *)(vh + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		proto = vh->h_vlan_encapsulated_proto;
		l4 = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l4;

		if ((void *)(ip + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		if (ip->ihl != 5 || ip->daddr != vip4)
			return count(STAT_PASS, ctx, XDP_PASS);
		if (ip->frag_off & bpf_htons(0x3fff))
			return count(STAT_PASS, ctx, XDP_PASS);
		key.family = 4;
		key.src[0] = ip->saddr;
		key.dst[0] = ip->daddr;
		key.proto = ip->protocol;
		l4 = ip + 1;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l4;

		if ((void *)(ip6 + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		if (ip6->daddr.in6_u.u6_addr32[0] != vip6[0] || ip6->daddr.in6_u.u6_addr32[1] != vip6[1] ||
		    ip6->daddr.in6_u.u6_addr32[2] != vip6[2] || ip6->daddr.in6_u.u6_addr32[3] != vip6[3])
			return count(STAT_PASS, ctx, XDP_PASS);
		key.family = 6;
		__builtin_memcpy(key.src, &ip6->saddr, 16);
		__builtin_memcpy(key.dst, &ip6->daddr, 16);
		key.proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		return count(STAT_PASS, ctx, XDP_PASS);
	}

	if (key.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		key.sport = th->source;
		key.dport = th->dest;
		l4sum = &th->check;
	} else if (key.proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		key.sport = uh->source;
		key.dport = uh->dest;
		if (uh->check)
			l4sum = &uh->check;
	} else {
		return count(STAT_PASS, ctx, XDP_PASS);
	}
	if (vip_port && key.dport != vip_port)
		return count(STAT_PASS, ctx, XDP_PASS);

	hit = bpf_map_lookup_elem(&conns, &key) != NULL;
	be = pick(&key, &idx);
	if (!be)
		return count(STAT_DROP, ctx, XDP_DROP);
	count(hit ? STAT_HIT : STAT_MISS, ctx, 0);

	swap_macs(eth, be);
	if (key.family == 4) {
		struct iphdr *ip = (void *)(eth + 1);

		if (proto != eth->h_proto)
			ip = (void *)ip + sizeof(struct vlan_hdr);
		if ((void *)(ip + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		__u32 old = ip->daddr, new = be->ip4;
		__s64 diff = bpf_csum_diff(&old, 4, &new, 4, ~((__u32)ip->check) & 0xffff);

		if (diff < 0)
			return count(STAT_DROP, ctx, XDP_DROP);
		ip->daddr = new;
		ip->check = csum_fold(diff);
		if (l4sum && (void *)(l4sum + 1) <= data_end)
			csum_replace4(l4sum, old, new);
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u32 old[4], new[4];

		if (proto != eth->h_proto)
			ip6 = (void *)ip6 + sizeof(struct vlan_hdr);
		if ((void *)(ip6 + 1) > data_end)
			return count(STAT_DROP, ctx, XDP_DROP);
		__builtin_memcpy(old, &ip6->daddr, 16);
		__builtin_memcpy(new, be->ip6, 16);
		__builtin_memcpy(&ip6->daddr, new, 16);
		if (l4sum && (void *)(l4sum + 1) <= data_end) {
			__s64 diff = bpf_csum_diff(old, 16, new, 16, ~((__u32)*l4sum) & 0xffff);

			if (diff >= 0)
				*l4sum = csum_fold(diff);
		}
	}
	return count(STAT_TX, ctx, XDP_TX);
}

char LICENSE[] SEC("license") = "GPL";
