// cpus: v3 v4
// Atomic read-modify-write with and without fetch, 32- and 64-bit, xchg and cmpxchg.
#include "bpf_mini.h"

__u64 c64;
__u32 c32;

SEC("xdp") int atomic_ops(struct xdp_md *ctx)
{
	__u64 v = ctx->data;
	__u32 w = ctx->data_end;
	__u64 r = 0;

	__sync_fetch_and_add(&c64, v);
	__sync_fetch_and_or(&c64, v);
	__sync_fetch_and_and(&c64, v);
	__sync_fetch_and_xor(&c64, v);
	__sync_fetch_and_add(&c32, w);
	__sync_fetch_and_or(&c32, w);
	__sync_fetch_and_and(&c32, w);
	__sync_fetch_and_xor(&c32, w);

	r += __sync_fetch_and_add(&c64, 3);
	r += __sync_fetch_and_or(&c64, v);
	r += __sync_fetch_and_and(&c64, v);
	r += __sync_fetch_and_xor(&c64, v);
	r += __sync_fetch_and_add(&c32, w);
	r += __sync_fetch_and_or(&c32, w);
	r += __sync_fetch_and_and(&c32, w);
	r += __sync_fetch_and_xor(&c32, w);

	r += __sync_lock_test_and_set(&c64, v);
	r += __sync_lock_test_and_set(&c32, w);
	r += __sync_val_compare_and_swap(&c64, v, r);
	r += __sync_val_compare_and_swap(&c32, w, (__u32)r);
	r += __atomic_exchange_n(&c64, 9, __ATOMIC_SEQ_CST);
	return (int)r;
}
