// SPDX-License-Identifier: GPL-2.0
/* tc programs: classifier sections, hash/LRU/queue/stack/bloom maps, a bpf_loop callback,
 * a custom .data.* section and string literals in .rodata.str1.1. */
#include "common.h"
#include <linux/pkt_cls.h>

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
	__uint(max_entries, 4096);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 128);
} recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 16);
} percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 16);
} lru_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 32);
} events_q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__type(value, __u64);
	__uint(max_entries, 8);
} events_s SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__type(value, __u32);
	__uint(max_entries, 256);
	__uint(map_extra, 3);
} seen SEC(".maps");

__u32 mark_value SEC(".data.marks") = 0x42;
__u32 mark_hits SEC(".data.marks") = 0;
static const char greeting[] = "hello tc";
int loop_total;

struct loop_ctx {
	struct __sk_buff *skb;
	__u32 sum;
};

static long sum_cb(__u32 index, void *data)
{
	struct loop_ctx *lc = data;

	lc->sum += index;
	return lc->sum > 100 ? 1 : 0;
}

static __attribute__((noinline)) int account(struct __sk_buff *skb)
{
	struct flow_key key = {};
	struct flow_stats init = {1, 0}, *st;

	key.proto = skb->protocol & 0xff;
	key.saddr = skb->hash;
	key.daddr = skb->ifindex;
	st = bpf_map_lookup_elem(&flows, &key);
	if (st) {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, skb->len);
	} else {
		init.bytes = skb->len;
		bpf_map_update_elem(&flows, &key, &init, BPF_ANY);
	}
	return 0;
}

SEC("tc")
int tc_classify(struct __sk_buff *skb)
{
	struct loop_ctx lc = {.skb = skb, .sum = 0};
	__u32 ifindex = skb->ifindex;
	__u64 now = 1;

	account(skb);
	bpf_loop(16, sum_cb, &lc, 0);
	loop_total = lc.sum;
	bpf_map_update_elem(&recent, &ifindex, &now, BPF_ANY);
	bpf_map_push_elem(&events_q, &ifindex, BPF_EXIST);
	bpf_map_push_elem(&events_s, &now, BPF_EXIST);
	bpf_map_push_elem(&seen, &ifindex, BPF_ANY);
	skb->mark = mark_value;
	mark_hits++;
	return TC_ACT_OK;
}

SEC("tcx/ingress")
int tcx_in(struct __sk_buff *skb)
{
	char buf[16];
	const char *msg = "tcx ingress %d";

	__builtin_memcpy(buf, greeting, sizeof(greeting));
	bpf_trace_printk(msg, 15, skb->len);
	return buf[0] == 'h' ? TC_ACT_OK : TC_ACT_SHOT;
}

SEC("tcx/egress")
int tcx_out(struct __sk_buff *skb)
{
	__u32 k = 0, *v = bpf_map_lookup_elem(&percpu_hash, &k);
	__u32 *w = bpf_map_lookup_elem(&lru_percpu, &k);

	return (v ? *v : 0) + (w ? *w : 0) ? TC_ACT_UNSPEC : TC_ACT_OK;
}

SEC("classifier")
int cls_legacy(struct __sk_buff *skb)
{
	return account(skb);
}

SEC("action")
int act_legacy(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
