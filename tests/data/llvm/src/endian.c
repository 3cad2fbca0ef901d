// cpus: v1 v2 v3 v4
// targets: bpfel bpfeb
// Byte swaps: be/le (BPF_END, ALU class) before cpu v4, bswap (ALU64 class) from v4.
#include "bpf_mini.h"

SEC("xdp") int swaps(struct xdp_md *ctx)
{
	__u64 x = ctx->data;
	__u16 a = __builtin_bswap16((__u16)x);
	__u32 b = __builtin_bswap32((__u32)ctx->data_end);
	__u64 c = __builtin_bswap64(x * 3);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u16 net = __builtin_bswap16((__u16)ctx->ingress_ifindex);
#else
	__u16 net = (__u16)ctx->ingress_ifindex;
#endif
	return a + b + (int)(c >> 7) + net;
}
