// cpus: v1 v2
// The only atomics of cpu v1/v2: add without fetch (BPF_XADD).
#include "bpf_mini.h"

__u64 c64;
__u32 c32;

SEC("xdp") int xadd(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&c64, ctx->data);
	__sync_fetch_and_add(&c32, ctx->data_end);
	return XDP_PASS;
}
