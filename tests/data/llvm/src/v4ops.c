// cpus: v4
// cpu v4: signed division and modulo, sign-extending moves and loads, bswap, gotol.
#include "bpf_mini.h"

struct rec {
	__s8 b;
	__s16 h;
	__s32 w;
	__s64 d;
};

__s64 sdiv64(__s64 a, __s64 b) { return a / b + a % b; }
__s32 sdiv32(__s32 a, __s32 b) { return a / b + a % b + a / 7 + a % -3; }

SEC("xdp") int v4(struct xdp_md *ctx)
{
	struct rec *r = (struct rec *)(long)ctx->data;
	struct rec *end = (struct rec *)(long)ctx->data_end;
	__s64 acc;
	if (r + 1 > end)
		return XDP_DROP;
	acc = r->b + r->h + r->w + r->d;           /* ldsx */
	acc += (__s8)acc + (__s16)(acc >> 8) + (__s32)(acc >> 16);  /* movsx */
	acc = sdiv64(acc, (__s64)ctx->ingress_ifindex - 5);
	acc += sdiv32((__s32)acc, (__s32)ctx->rx_queue_index - 9);
	acc ^= __builtin_bswap16((__u16)acc) + __builtin_bswap32((__u32)acc) + __builtin_bswap64(acc);
	return (int)acc;
}

SEC("xdp") int far(struct xdp_md *ctx)
{
	int r = ctx->ingress_ifindex;
	asm volatile("if %0 == 0 goto +1; gotol +2; %0 += 1; gotol +0; %0 += 2" : "+r"(r));
	return r;
}
