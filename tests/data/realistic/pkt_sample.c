// SPDX-License-Identifier: GPL-2.0
/* xdpdump / tcpdump-in-BPF style sampling: every `sample_every`-th packet is sent to user
 * space through a perf event array with its first bytes attached by the helper itself
 * (the BPF_F_CTXLEN_MASK part of the flags), from XDP and from tc.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_CAPTURE 96
#define BPF_F_CTXLEN_SHIFT 32

struct sample_hdr {
	__u32 seq;
	__u16 captured;
	__u16 origin;	/* 1 xdp, 2 tc */
	__u32 len;
	__u32 mark;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 64);
} samples SEC(".maps");

const volatile __u32 sample_every = 1;
__u32 seen = 0, sent = 0, failed = 0;

static __always_inline int sample(void *ctx, __u32 len, __u32 mark, __u16 origin)
{
	struct sample_hdr h = { .seq = seen++, .origin = origin, .len = len, .mark = mark };
	__u64 flags;
	long err;

	if (sample_every == 0 || h.seq % sample_every)
		return 0;
	h.captured = len < MAX_CAPTURE ? len : MAX_CAPTURE;
	flags = BPF_F_CURRENT_CPU | ((__u64)h.captured << BPF_F_CTXLEN_SHIFT);
	err = bpf_perf_event_output(ctx, &samples, flags, &h, sizeof(h));
	if (err)
		failed++;
	else
		sent++;
	return err;
}

SEC("xdp")
int xdp_sample(struct xdp_md *ctx)
{
	sample(ctx, ctx->data_end - ctx->data, 0, 1);
	return XDP_PASS;
}

SEC("tc")
int tc_sample(struct __sk_buff *skb)
{
	sample(skb, skb->len, skb->mark, 2);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
