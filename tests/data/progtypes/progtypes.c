// SPDX-License-Identifier: GPL-2.0
/* Flow dissector, sk_lookup and netfilter programs for the runtime's test runs
 * (tests/vm/test_context_progtypes.py, tests/differential/test_progtypes_kernel.py).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define NF_ACCEPT 1
#define NF_DROP 0

/* What the programs saw, for the maps comparison. */
__u64 seen[24] = {};
__u32 runs = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
}

/* Direct packet access, as real dissectors do (bpf_skb_load_bytes has no skb in test runs). */
SEC("flow_dissector")
int fd_direct(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 scratch[4] = {1, 2, 3, 4};
	long rc;

	runs++;
	seen[0] = keys->nhoff | (__u64)keys->thoff << 16 | (__u64)keys->n_proto << 32;
	seen[1] = keys->flags | (__u64)keys->addr_proto << 32;
	seen[2] = (long)data_end - (long)data;
	rc = bpf_skb_load_bytes(skb, 0, scratch, sizeof(scratch));
	seen[3] = rc;
	seen[4] = *(__u32 *)scratch;
	count(keys->n_proto);

	if (keys->n_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + sizeof(struct ethhdr);

		if ((void *)(ip + 1) > data_end)
			return BPF_DROP;
		if (ip->ihl < 5)
			return BPF_DROP;
		keys->addr_proto = ETH_P_IP;
		keys->ipv4_src = ip->saddr;
		keys->ipv4_dst = ip->daddr;
		keys->ip_proto = ip->protocol;
		keys->is_frag = !!(ip->frag_off & bpf_htons(0x3fff));
		keys->is_first_frag = !(ip->frag_off & bpf_htons(0x1fff));
		keys->thoff = keys->nhoff + ip->ihl * 4;
	} else if (keys->n_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);

		if ((void *)(ip6 + 1) > data_end)
			return BPF_DROP;
		keys->addr_proto = ETH_P_IPV6;
		__builtin_memcpy(keys->ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(keys->ipv6_dst, &ip6->daddr, 16);
		keys->ip_proto = ip6->nexthdr;
		keys->flow_label = *(__be32 *)ip6 & bpf_htonl(0xfffff);
		keys->thoff = keys->nhoff + sizeof(*ip6);
	} else {
		return BPF_DROP;
	}
	if (keys->ip_proto == IPPROTO_TCP || keys->ip_proto == IPPROTO_UDP) {
		__u32 off = keys->thoff;
		__be16 *ports;

		if (off > 200)
			return BPF_DROP;
		ports = data + off;
		if ((void *)(ports + 2) > data_end)
			return BPF_DROP;
		keys->sport = ports[0];
		keys->dport = ports[1];
	}
	if (keys->flags & BPF_FLOW_DISSECTOR_F_STOP_AT_ENCAP)
		keys->is_encap = 1;
	return BPF_OK;
}

/* nhoff/thoff set from the packet: the kernel clamps them after the run. */
SEC("flow_dissector")
int fd_clamp(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *p = data;

	runs++;
	if ((void *)(p + 20) > data_end)
		return 77;
	keys->nhoff = p[14] | p[15] << 8;
	keys->thoff = p[16] | p[17] << 8;
	keys->nhoff += runs; /* the keys are reset before every repeat */
	return p[18];
}

/* A dissector split over tail calls, as the kernel's reference bpf_flow.c is. */
SEC("flow_dissector")
int fd_tail_ip4(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);

	count(1000 + keys->thoff);
	if ((void *)(ip + 1) > data_end)
		return BPF_DROP;
	keys->ip_proto = ip->protocol;
	keys->ipv4_src = ip->saddr;
	keys->thoff += ip->ihl * 4;
	return ip->ttl == 1 ? BPF_DROP : BPF_OK;
}

SEC("flow_dissector")
int fd_tail_ip6(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;

	count(2000 + keys->nhoff);
	keys->nhoff = 0xffff; /* clamped to the frame's length */
	return BPF_OK;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} jmp_table SEC(".maps") = {
	.values = {
		[0] = (void *)&fd_tail_ip4,
		[1] = (void *)&fd_tail_ip6,
	},
};

SEC("flow_dissector")
int fd_tail(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;

	runs++;
	if (keys->n_proto == bpf_htons(ETH_P_IP))
		bpf_tail_call(skb, &jmp_table, 0);
	else if (keys->n_proto == bpf_htons(ETH_P_IPV6))
		bpf_tail_call(skb, &jmp_table, 1);
	else
		bpf_tail_call(skb, &jmp_table, 3); /* an empty slot: falls through */
	return 99;
}

SEC("sk_lookup")
int skl_read(struct bpf_sk_lookup *ctx)
{
	__u64 flags = ctx->local_port & 7;
	long rc;

	runs++;
	seen[0] = ctx->family | (__u64)ctx->protocol << 32;
	seen[1] = ctx->remote_ip4 | (__u64)ctx->local_ip4 << 32;
	seen[2] = ctx->remote_ip6[0] | (__u64)ctx->remote_ip6[3] << 32;
	seen[3] = ctx->local_ip6[1] | (__u64)ctx->local_ip6[2] << 32;
	seen[4] = ctx->remote_port | (__u64)ctx->local_port << 32;
	seen[5] = ctx->ingress_ifindex;
	seen[6] = (long)ctx->sk;
	__u64 b, h, w;

	/* narrow loads and the 4-byte load of remote_port with its zero padding */
	asm volatile("%0 = *(u8 *)(%1 + 9)" : "=r"(b) : "r"(ctx));
	asm volatile("%0 = *(u16 *)(%1 + 42)" : "=r"(h) : "r"(ctx));
	asm volatile("%0 = *(u32 *)(%1 + 36)" : "=r"(w) : "r"(ctx));
	seen[7] = b | h << 16;
	seen[8] = w;
	rc = bpf_sk_assign(ctx, NULL, flags);
	seen[9] = rc;
	rc = bpf_sk_assign(ctx, NULL, 0);
	seen[10] = rc;
	count(ctx->local_port);
	if (ctx->local_port == 7777 || ctx->protocol == IPPROTO_UDP)
		return SK_DROP;
	return SK_PASS;
}

/* Socket maps: empty in user space (no sockets there), so no socket is ever selected. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} redir_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} redir_hash SEC(".maps");

SEC("sk_lookup")
int skl_redir(struct bpf_sk_lookup *ctx)
{
	__u32 key = ctx->local_port & 3;
	struct bpf_sock *sk;
	long rc;

	runs++;
	if (ctx->protocol == IPPROTO_UDP)
		sk = bpf_map_lookup_elem(&redir_hash, &key);
	else
		sk = bpf_map_lookup_elem(&redir_map, &key);
	if (!sk) {
		count(3000 + key);
		return key == 1 ? SK_DROP : SK_PASS;
	}
	rc = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	seen[16] = rc;
	return SK_PASS;
}

SEC("netfilter")
int nf_read(struct bpf_nf_ctx *ctx)
{
	const struct nf_hook_state *state = ctx->state;

	runs++;
	seen[0] = state->hook | (__u64)state->pf << 8;
	seen[1] = (state->in != NULL) | (state->out != NULL) << 1 | (state->sk != NULL) << 2 |
		  (state->net != NULL) << 3 | (ctx->skb != NULL) << 4;
	count(state->hook);
	if (state->hook == NF_INET_FORWARD)
		return NF_DROP;
	return NF_ACCEPT;
}

/* The socket buffer the test run builds, read through BTF (CO-RE) pointers. */
SEC("netfilter")
int nf_skb(struct bpf_nf_ctx *ctx)
{
	const struct nf_hook_state *state = ctx->state;
	struct sk_buff *skb = ctx->skb;
	struct net_device *dev = skb->dev;
	__u8 buf[4] = {};

	runs++;
	seen[0] = skb->len | (__u64)skb->data_len << 32;
	seen[1] = skb->protocol | (__u64)skb->mac_len << 16 | (__u64)skb->hdr_len << 32;
	seen[2] = skb->mac_header | (__u64)skb->network_header << 16 |
		  (__u64)skb->transport_header << 32;
	seen[3] = (long)skb->data - (long)skb->head;
	seen[4] = skb->tail | (__u64)skb->end << 32;
	seen[5] = (dev != NULL) | (__u64)(skb->sk != NULL) << 1;
	seen[6] = dev ? dev->ifindex | (__u64)dev->mtu << 32 : 0;
	seen[7] = skb->mark | (__u64)skb->priority << 32;
	seen[8] = bpf_probe_read_kernel(buf, sizeof(buf), skb->data);
	seen[9] = *(__u32 *)buf;
	seen[10] = state->out ? state->out->ifindex : 0;
	if (state->out)
		bpf_probe_read_kernel_str(&seen[11], 16, state->out->name);
	seen[12] = skb->truesize | (__u64)skb->users.refs.counter << 32;
	seen[13] = BPF_CORE_READ_BITFIELD(skb, pkt_type) | (__u64)skb->ip_summed << 8;
	seen[14] = skb->skb_iif | (__u64)skb->hash << 32;
	return skb->len > 100 ? NF_DROP : NF_ACCEPT;
}

/* bpf_dynptr_from_skb on the netfilter skb (kfuncs), as netfilter programs parse packets. */
extern int bpf_dynptr_from_skb(struct __sk_buff *s, __u64 flags, struct bpf_dynptr *p) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset, void *buffer,
			      __u32 buffer__szk) __ksym;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

SEC("netfilter")
int nf_dynptr(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	__u8 buf[24] = {};
	struct bpf_dynptr ptr;
	__u8 *p;
	long rc;

	runs++;
	rc = bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr);
	seen[17] = rc;
	if (rc)
		return NF_ACCEPT;
	seen[18] = bpf_dynptr_size(&ptr);
	p = bpf_dynptr_slice(&ptr, 0, buf, sizeof(buf));
	if (!p)
		return NF_ACCEPT;
	seen[19] = p[0] | (__u64)p[9] << 8 | (__u64)p[23] << 16;
	seen[20] = bpf_dynptr_read(buf, 4, &ptr, skb->len - 2, 0);
	return p[9] == IPPROTO_UDP ? NF_DROP : NF_ACCEPT;
}

char LICENSE[] SEC("license") = "GPL";
