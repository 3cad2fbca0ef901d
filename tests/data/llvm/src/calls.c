// cpus: v2 v4
// bpf-to-bpf calls (BPF_PSEUDO_CALL), static and global subprograms, callbacks.
#include "bpf_mini.h"

static __noinline int square(int x)
{
	return x * x;
}

__noinline int mix(int a, int b, int c, int d, int e)
{
	return square(a) + b * c - (unsigned)d / ((unsigned)e | 1);
}

static int step(__u32 index, void *data)
{
	*(__u64 *)data += index;
	return 0;
}

SEC("xdp") int caller(struct xdp_md *ctx)
{
	__u64 acc = 0;
	bpf_loop(10, step, &acc, 0);
	return mix(ctx->data, ctx->data_end, 3, 4, square(ctx->rx_queue_index)) + (int)acc;
}

SEC("tc") int caller2(void *ctx)
{
	return square(5) + mix(1, 2, 3, 4, 5);
}
