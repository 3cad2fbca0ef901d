// SPDX-License-Identifier: GPL-2.0
/* Newer idioms in libbpf programs: dynptrs over ring buffer records and local memory,
 * open-coded numeric iterators (bpf_for, kfuncs), and tc helpers for ECN, checksum levels
 * and the MTU.  Each program stands alone so one missing feature hides nothing else.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

/* libbpf's bpf_for(), written out */
#define for_range(i, start, end)                                                     \
	for (struct bpf_iter_num ___it __attribute__((aligned(8),                    \
						      cleanup(bpf_iter_num_destroy))), \
	     *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), (void *)0);          \
	     ({                                                                      \
		     int *___t = bpf_iter_num_next(&___it);                          \
		     (___t && ((i) = *___t, 1));                                     \
	     });)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

struct job_req {
	__u32 n;
	__u32 step;
	__u64 out_sum;
	__u64 out_read;
	char text[16];
};

__u64 dyn_errors = 0;
char scratch[16] = {};

SEC("syscall")
int dynptr_rb(struct job_req *r)
{
	struct bpf_dynptr rec, local;
	char buf[16] = {};
	__u64 hdr = 0xabcd0000 | r->n;
	long err;

	err = bpf_ringbuf_reserve_dynptr(&records, 32, 0, &rec);
	if (err) {
		dyn_errors++;
		bpf_ringbuf_discard_dynptr(&rec, 0);
		return 1;
	}
	bpf_dynptr_write(&rec, 0, &hdr, sizeof(hdr), 0);
	__builtin_memcpy(scratch, r->text, sizeof(scratch));
	bpf_dynptr_from_mem(scratch, sizeof(scratch), 0, &local);
	bpf_dynptr_read(buf, sizeof(buf), &local, 0, 0);
	err = bpf_dynptr_write(&rec, 8, buf, sizeof(buf), 0);
	__u64 *tail = bpf_dynptr_data(&rec, 24, 8);
	if (tail)
		*tail = r->step;
	r->out_read = buf[0] | (__u64)buf[15] << 8;
	if (r->n & 1)
		bpf_ringbuf_discard_dynptr(&rec, 0);
	else
		bpf_ringbuf_submit_dynptr(&rec, 0);
	/* writing past the end of a dynptr fails with -E2BIG */
	r->out_sum = bpf_dynptr_write(&local, 12, buf, 8, 0);
	return err;
}

SEC("syscall")
int iter_sum(struct job_req *r)
{
	__u64 sum = 0;
	int i;

	for_range(i, 0, r->n)
	{
		if (r->step && i % r->step == 0)
			continue;
		sum += i;
	}
	r->out_sum = sum;
	return 0;
}

SEC("tc")
int tc_misc(struct __sk_buff *skb)
{
	__u32 mtu_len = 0;

	skb->cb[0] = skb->hash;
	skb->cb[1] = bpf_skb_ecn_set_ce(skb);
	skb->cb[2] = bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY);
	skb->cb[3] = bpf_check_mtu(skb, 0, &mtu_len, 0, 0);
	skb->cb[4] = mtu_len;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
