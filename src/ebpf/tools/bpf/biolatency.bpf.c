// SPDX-License-Identifier: GPL-2.0
/* biolatency: block I/O latency from issue to completion as a log2 histogram (block tracepoints). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

#define MAX_SLOTS 27

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 targ_dev = 0;  /* only this device (kernel dev_t: major << 20 | minor); 0: all */
const volatile __u32 in_ms = 0;     /* 1: milliseconds instead of microseconds */
const volatile __u32 per_disk = 0;  /* 1: one histogram per device */

struct rq_key {
	__u32 dev;
	__u32 pad;
	__u64 sector;
};

struct hist_key {
	__u32 dev; /* 0 unless per_disk */
};

struct hist {
	__u32 slots[MAX_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct rq_key);
	__type(value, __u64);
} issued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

/* floor(log2(v)) for v > 0, 0 for v == 0: the slot of bcc's log2 histograms. */
static __always_inline __u32 log2l(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

SEC("tracepoint/block/block_rq_issue")
int biolatency_issue(struct trace_event_raw_block_rq *ctx)
{
	struct rq_key key = {.dev = ctx->dev, .sector = ctx->sector};
	__u64 ts = bpf_ktime_get_ns();

	if (targ_dev && key.dev != targ_dev)
		return 0;
	bpf_map_update_elem(&issued, &key, &ts, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int biolatency_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	struct rq_key key = {.dev = ctx->dev, .sector = ctx->sector};
	struct hist_key hkey = {};
	struct hist *h, zero = {};
	__u64 *tsp, delta;
	__u32 slot;

	tsp = bpf_map_lookup_elem(&issued, &key);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&issued, &key);
	delta /= in_ms ? 1000000 : 1000;
	if (per_disk)
		hkey.dev = key.dev;
	h = bpf_map_lookup_elem(&hists, &hkey);
	if (!h) {
		bpf_map_update_elem(&hists, &hkey, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &hkey);
		if (!h)
			return 0;
	}
	slot = log2l(delta);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	return 0;
}
