// cpus: v1 v2 v3 v4
// 64- and 32-bit arithmetic with register and immediate operands.
#include "bpf_mini.h"

SEC("xdp") int alu64(struct xdp_md *ctx)
{
	__u64 a = ctx->data, b = ctx->data_end, c = ctx->ingress_ifindex;
	__s64 s = (__s64)ctx->rx_queue_index - 1000;
	a += 7; a -= b; a *= 13; a /= (b | 1); a %= (c | 3);
	a |= 0x40; a &= ~b; a ^= 0x5555; a <<= 3; a >>= (c & 7);
	s >>= 2; s = -s;
	a = a * b + (a << (b & 31)) - (s >> (c & 15));
	return (int)(a ^ (a >> 32) ^ (__u64)s);
}

SEC("xdp") int alu32(struct xdp_md *ctx)
{
	__u32 a = ctx->data, b = ctx->data_end, c = ctx->ingress_ifindex;
	__s32 s = (__s32)ctx->rx_queue_index - 1000;
	a += 0x7fffffff; a -= b; a *= c; a /= 10; a %= (b | 1);
	a |= b; a &= 0xff00ff; a ^= c; a <<= (b & 7); a >>= 1;
	s >>= (c & 3); s = -s;
	return a + s + (a / (c | 1));
}

SEC("xdp") int consts(struct xdp_md *ctx)
{
	__u64 big = 0x123456789abcdef0ULL;
	__u64 neg = -1ULL;
	return (int)((ctx->data ^ big) + (ctx->data_end & neg) + 0x80000000u);
}
