// SPDX-License-Identifier: GPL-2.0
/* Global data of every kind, as skeleton users write it.
 *
 * `const volatile` knobs in .rodata are set from user space before load; .data holds
 * initialised state, .bss zeroed counters, and custom sections .data.stats / .rodata.table
 * hold a struct array and a lookup table.  `apply` (XDP) reads them all, writes
 * .data/.bss/.data.stats and stamps the packet with what it saw.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct limits {
	__u16 min_len;
	__u16 max_len;
	__u32 flags;
};

/* .rodata: knobs */
const volatile __u32 verdict_default = XDP_PASS;
const volatile __u8 xor_key = 0x00;
const volatile struct limits limits = { .min_len = 14, .max_len = 1500, .flags = 0 };
const volatile char banner[8] = "v1";

/* .data: initialised, written by the program */
__u32 generation = 7;
__u64 last_len = 0xdeadbeef;
char last_head[4] = "none";

/* .bss */
__u64 packets;
__u64 bytes;
__u32 too_short, too_long;
struct limits seen_limits;

/* custom sections */
struct len_bucket {
	__u32 count;
	__u32 last;
};
struct len_bucket len_hist[8] SEC(".data.stats") = { [7] = { .count = 100 } };
__u32 hist_writes SEC(".data.stats") = 1;

const __u8 weight[16] SEC(".rodata.table") = { 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 21, 98, 0, 255 };
const volatile __u32 table_scale SEC(".rodata.table") = 1;

SEC("xdp")
int apply(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data, b;

	packets++;
	bytes += len;
	last_len = len;
	generation++;
	seen_limits.min_len = limits.min_len;
	seen_limits.max_len = limits.max_len;
	seen_limits.flags = limits.flags | banner[0] << 24 | banner[1] << 16;

	if (len < limits.min_len) {
		too_short++;
		return XDP_DROP;
	}
	if (len > limits.max_len) {
		too_long++;
		return XDP_DROP;
	}
	b = len >> 6;
	if (b > 7)
		b = 7;
	len_hist[b].count++;
	len_hist[b].last = len;
	hist_writes++;

	if (data + 14 > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(last_head, data, 4);
	data[12] ^= xor_key;
	data[13] = weight[data[13] & 15] * table_scale;
	return verdict_default;
}

char LICENSE[] SEC("license") = "GPL";
