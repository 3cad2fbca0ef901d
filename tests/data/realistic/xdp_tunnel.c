// SPDX-License-Identifier: GPL-2.0
/* XDP packet surgery as tunnelling load balancers (Katran style) and samplers do it.
 *
 * `encap` wraps IPv4 packets for a VIP in an outer IPv4 header (IPIP) with
 * bpf_xdp_adjust_head, computing the outer header checksum with bpf_csum_diff; `decap`
 * strips it again.  `meta` puts a mark into the metadata area (bpf_xdp_adjust_meta) that
 * `meta` itself reads back; `trim` cuts or grows the tail (bpf_xdp_adjust_tail) and copies
 * bytes with bpf_xdp_load_bytes / bpf_xdp_store_bytes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800

const volatile __u32 tunnel_src = 0;	/* network order */
const volatile __u32 tunnel_dst = 0;
const volatile __u32 vip = 0;
const volatile __s32 tail_delta = -4;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 8);
} counters SEC(".maps");

static __always_inline void bump(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &k);

	if (v)
		*v += 1;
}

static __always_inline __u16 csum_fold32(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return ~csum;
}

SEC("xdp")
int encap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data, *neth;
	struct iphdr *inner, *outer;
	struct ethhdr saved;
	__u16 inner_len;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	inner = (void *)(eth + 1);
	if ((void *)(inner + 1) > data_end || inner->daddr != vip)
		return XDP_PASS;
	inner_len = inner->tot_len;
	__builtin_memcpy(&saved, eth, sizeof(saved));

	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr))) {
		bump(7);
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	neth = data;
	outer = (void *)(neth + 1);
	if ((void *)(outer + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(neth, &saved, sizeof(saved));
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = 0;
	outer->tot_len = bpf_htons(bpf_ntohs(inner_len) + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = bpf_htons(0x4000);
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = tunnel_src;
	outer->daddr = tunnel_dst;
	__s64 sum = bpf_csum_diff(NULL, 0, (__be32 *)outer, sizeof(*outer), 0);
	if (sum < 0)
		return XDP_ABORTED;
	outer->check = csum_fold32(sum);
	bump(0);
	return XDP_TX;
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer;
	struct ethhdr saved;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end || outer->protocol != IPPROTO_IPIP || outer->ihl != 5)
		return XDP_PASS;
	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, sizeof(struct iphdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth, &saved, sizeof(saved));
	bump(1);
	return XDP_PASS;
}

struct meta {
	__u32 mark;
	__u32 len;
};

SEC("xdp")
int meta(struct xdp_md *ctx)
{
	struct meta *m;
	void *data;
	int err;

	err = bpf_xdp_adjust_meta(ctx, -(int)sizeof(*m));
	if (err) {
		bump(6);
		return XDP_ABORTED;
	}
	data = (void *)(long)ctx->data;
	m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > data)
		return XDP_DROP;
	m->mark = 0xfeed;
	m->len = ctx->data_end - ctx->data;
	bump(2);
	return m->len > 64 ? XDP_PASS : XDP_TX;
}

SEC("xdp")
int trim(struct xdp_md *ctx)
{
	__u8 buf[8];
	__u32 len = bpf_xdp_get_buff_len(ctx);

	if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)) < 0) {
		bump(5);
		return XDP_DROP;
	}
	if (bpf_xdp_adjust_tail(ctx, tail_delta) < 0) {
		bump(4);
		return XDP_ABORTED;
	}
	len = bpf_xdp_get_buff_len(ctx);
	if (len >= 16 && bpf_xdp_store_bytes(ctx, len - 8, buf, sizeof(buf)) < 0)
		return XDP_DROP;
	bump(3);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
