// SPDX-License-Identifier: GPL-2.0
/* A tracer that reports through a ring buffer.
 *
 * `emit` (BPF_PROG_TYPE_SYSCALL, run with a context built by user space) walks `count`
 * items with bpf_loop: each iteration reserves a record, fills it, and submits it or
 * (for filtered items) discards it; a summary goes out with bpf_ringbuf_output.  The result
 * is written back into the context.  `on_sys_enter` is a raw tracepoint counting syscall ids
 * and sending a small record for the ones it is told to watch.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct event {
	__u32 kind;
	__u32 seq;
	__u64 value;
	char tag[8];
};

struct summary {
	__u32 kind;
	__u32 submitted;
	__u32 discarded;
	__u32 failed;
	__u64 sum;
};

struct emit_args {
	__u32 count;
	__u32 discard_mod;	/* discard items whose index % discard_mod == 0 (0: never) */
	__u64 base;
	char tag[8];
	__u32 submitted;	/* out */
	__u32 discarded;	/* out */
	__u64 sum;		/* out */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 512);
} sys_counts SEC(".maps");

__u64 seq = 0;
__u32 reserve_failures = 0;
const volatile __u64 watch_id = 39;

struct loop_ctx {
	struct emit_args *args;
	struct summary s;
};

static long emit_one(__u32 i, void *data)
{
	struct loop_ctx *lc = data;
	struct emit_args *a = lc->args;
	struct event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lc->s.failed++;
		reserve_failures++;
		return 1;	/* stop the loop */
	}
	e->kind = 1;
	e->seq = __sync_fetch_and_add(&seq, 1);
	e->value = a->base + (__u64)i * i;
	__builtin_memcpy(e->tag, a->tag, sizeof(e->tag));
	if (a->discard_mod && i % a->discard_mod == 0) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		lc->s.discarded++;
		return 0;
	}
	lc->s.sum += e->value;
	bpf_ringbuf_submit(e, 0);
	lc->s.submitted++;
	return 0;
}

SEC("syscall")
int emit(struct emit_args *args)
{
	struct loop_ctx lc = { .args = args, .s = { .kind = 2 } };
	__u32 n = args->count;

	if (n > 1000)
		return -7; /* -E2BIG */
	bpf_loop(n, emit_one, &lc, 0);
	args->submitted = lc.s.submitted;
	args->discarded = lc.s.discarded;
	args->sum = lc.s.sum;
	if (bpf_ringbuf_output(&events, &lc.s, sizeof(lc.s), 0) < 0)
		reserve_failures++;
	return lc.s.submitted;
}

SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = ctx->args[1], one = 1, *c;

	c = bpf_map_lookup_elem(&sys_counts, &id);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		bpf_map_update_elem(&sys_counts, &id, &one, BPF_NOEXIST);
	if (id == watch_id) {
		struct event e = { .kind = 3, .value = ctx->args[0] };

		e.seq = __sync_fetch_and_add(&seq, 1);
		__builtin_memcpy(e.tag, "sysenter", 8);
		bpf_ringbuf_output(&events, &e, sizeof(e), BPF_RB_FORCE_WAKEUP);
		return 1;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
