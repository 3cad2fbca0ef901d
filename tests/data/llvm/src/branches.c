// cpus: v1 v2 v3 v4
// Loops, switch and every comparison, signed and unsigned, 64- and 32-bit.
#include "bpf_mini.h"

SEC("xdp") int loops(struct xdp_md *ctx)
{
	__u32 n = ctx->ingress_ifindex & 31, sum = 0;
	for (__u32 i = 0; i < n; i++) {
		if (i & 1)
			continue;
		sum += i * i;
		if (sum > 1000)
			break;
	}
	__u32 j = 0;
	while (j < 20 && (sum >> j))
		j++;
	return sum + j;
}

SEC("xdp") int sw(struct xdp_md *ctx)
{
	switch (ctx->rx_queue_index) {
	case 0: return XDP_PASS;
	case 1: return XDP_DROP;
	case 5: return XDP_TX;
	case 100: return 7;
	case 1000: return 9;
	default: return XDP_ABORTED;
	}
}

SEC("xdp") int compare(struct xdp_md *ctx)
{
	__s64 a = (__s64)ctx->data - 10, b = (__s64)ctx->data_end;
	__s32 x = (__s32)ctx->ingress_ifindex - 3, y = (__s32)ctx->rx_queue_index;
	__u32 u = ctx->data_meta, v = ctx->egress_ifindex;
	int r = 0;
	if (a < b) r += 1;
	if (a <= -5) r += 2;
	if (a > 77) r += 4;
	if (a >= b) r += 8;
	if ((__u64)a < (__u64)b) r += 16;
	if ((__u64)a > 9) r += 32;
	if (x < y) r += 64;
	if (x <= -9) r += 128;
	if (x > y) r += 256;
	if (u < v) r += 512;
	if (u >= 33) r += 1024;
	if (u != v) r += 2048;
	if (a & 0x10) r += 4096;
	if (u == 12) r -= 1;
	return r;
}
