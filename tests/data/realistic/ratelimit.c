// SPDX-License-Identifier: GPL-2.0
/* A per-source token-bucket rate limiter with the atomics people use for lock-free state
 * (fetch_add/or/and/xor, xchg, cmpxchg retry loops, 32- and 64-bit) and signed arithmetic.
 * Built with -mcpu=v4 (sign-extending loads and moves, sdiv/smod, bswap, gotol-capable).
 * "Time" comes from the packet (a u64 after the Ethernet header) so runs are replayable.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct tbucket {
	__u64 last_ns;
	__s64 tokens;
	__u32 flags;
	__u32 drops;
	__s32 credit;	/* signed adjustments */
	__u32 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct tbucket);
	__uint(max_entries, 256);
} buckets SEC(".maps");

const volatile __s64 rate_per_ms = 3;
const volatile __s64 burst = 10;

__u64 total_pass = 0, total_drop = 0;
__u32 flag_bits = 0, xor_acc = 0;
__u64 last_swap = 0;
__s64 signed_acc = 0;

SEC("xdp")
int ratelimit(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct {
		__u8 eth[14];
		__u32 src;
		__u64 now;
		__s8 adj;
		__s16 adj16;
	} __attribute__((packed)) *p = data;
	struct tbucket *b, fresh = {};
	__u32 key;
	__s64 elapsed, refill, want, old;

	if ((void *)(p + 1) > data_end)
		return XDP_PASS;
	key = p->src;
	b = bpf_map_lookup_elem(&buckets, &key);
	if (!b) {
		fresh.last_ns = p->now;
		fresh.tokens = burst;
		bpf_map_update_elem(&buckets, &key, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&buckets, &key);
		if (!b)
			return XDP_ABORTED;
	}
	elapsed = (__s64)(p->now - b->last_ns);
	refill = elapsed / 1000000 * rate_per_ms;	/* signed division */
	__sync_lock_test_and_set(&b->last_ns, p->now);	/* xchg */
	if (refill > 0) {
		old = b->tokens;
		want = old + refill > burst ? burst : old + refill;
		__sync_val_compare_and_swap(&b->tokens, old, want);
	}
	__sync_fetch_and_add(&b->credit, (__s32)p->adj + p->adj16 % 7);
	signed_acc += (__s64)p->adj * p->adj16 / 3 + ((__s64)p->adj16 % -5);
	__sync_fetch_and_or(&flag_bits, 1u << (key & 31));
	__sync_fetch_and_xor(&xor_acc, key);
	__sync_fetch_and_and(&b->flags, ~(__u32)p->adj);
	last_swap = __sync_lock_test_and_set(&last_swap, __builtin_bswap64(p->now));
	__sync_fetch_and_add(&b->seq, 1);

	old = __sync_fetch_and_sub(&b->tokens, 1);
	if (old <= 0) {
		__sync_fetch_and_add(&b->tokens, 1);
		__sync_fetch_and_add(&b->drops, 1);
		__sync_fetch_and_add(&total_drop, 1);
		return XDP_DROP;
	}
	__sync_fetch_and_add(&total_pass, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
