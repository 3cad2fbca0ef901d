// SPDX-License-Identifier: GPL-2.0
/* A small connection tracker with the "advanced" helpers real programs use.
 *
 * Flow state lives in a hash whose values carry a bpf_spin_lock; a global (non-static)
 * function does the parsing, so the verifier checks it on its own; bpf_for_each_map_elem
 * sweeps the table (counting and expiring flows in a callback); bpf_snprintf formats a
 * label into .bss and bpf_strncmp checks a knob; per-CPU totals are read back with
 * bpf_map_lookup_percpu_elem.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800

struct flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 proto;
};

struct flow_state {
	struct bpf_spin_lock lock;
	__u32 packets;
	__u64 bytes;
	__u32 tcp_flags;
	__u32 state;	/* 0 new, 1 established, 2 closing */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow);
	__type(value, struct flow_state);
	__uint(max_entries, 256);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2);
} totals SEC(".maps");

const volatile char mode[8] = "track";
char label[48] = {};
__u32 swept, expired, label_len;
__s32 cmp_result;

__noinline int parse_flow(struct xdp_md *ctx, struct flow *f, __u32 *flags)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if (!f || !flags)
		return -1;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return -1;
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	*flags = 0;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(ip + 1);

		if ((void *)(th + 1) > data_end)
			return -1;
		f->sport = th->source;
		f->dport = th->dest;
		*flags = ((__u8 *)th)[13];
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(ip + 1);

		if ((void *)(uh + 1) > data_end)
			return -1;
		f->sport = uh->source;
		f->dport = uh->dest;
	}
	return data_end - data;
}

struct sweep_ctx {
	__u32 seen;
	__u32 closing;
};

static long sweep_one(struct bpf_map *map, struct flow *key, struct flow_state *val, struct sweep_ctx *sc)
{
	sc->seen++;
	if (val->state == 2) {
		sc->closing++;
		bpf_map_delete_elem(map, key);
	}
	return sc->seen >= 100;
}

SEC("xdp")
int track(struct xdp_md *ctx)
{
	struct flow f = {};
	struct flow_state *st, init = {};
	__u32 flags, zero = 0;
	__u64 *total;
	int len;

	cmp_result = bpf_strncmp((const char *)mode, 8, "track");
	if (cmp_result != 0)
		return XDP_PASS;
	len = parse_flow(ctx, &f, &flags);
	if (len < 0)
		return XDP_PASS;

	total = bpf_map_lookup_elem(&totals, &zero);
	if (total)
		*total += len;

	st = bpf_map_lookup_elem(&flows, &f);
	if (!st) {
		bpf_map_update_elem(&flows, &f, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&flows, &f);
		if (!st)
			return XDP_ABORTED;
	}
	bpf_spin_lock(&st->lock);
	st->packets++;
	st->bytes += len;
	st->tcp_flags |= flags;
	if (flags & 0x05)	/* FIN or RST */
		st->state = 2;
	else if (flags & 0x10)
		st->state = 1;
	bpf_spin_unlock(&st->lock);

	__u64 args[3] = { (__u64)&f.saddr, bpf_ntohs(f.dport), f.proto };
	label_len = bpf_snprintf(label, sizeof(label), "%pI4:%u/%llu", args, sizeof(args));
	return XDP_PASS;
}

SEC("xdp")
int sweep(struct xdp_md *ctx)
{
	struct sweep_ctx sc = {};
	__u32 zero = 0;
	__u64 *t;
	long n;

	n = bpf_for_each_map_elem(&flows, sweep_one, &sc, 0);
	swept = sc.seen;
	expired += sc.closing;
	t = bpf_map_lookup_percpu_elem(&totals, &zero, 0);
	if (t) {
		zero = 1;
		__u64 *dst = bpf_map_lookup_elem(&totals, &zero);
		if (dst)
			*dst = *t + n;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
