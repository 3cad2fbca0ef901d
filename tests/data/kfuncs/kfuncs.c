// SPDX-License-Identifier: GPL-2.0
/* Kfuncs as libbpf programs call them (__ksym externs): packet parsing through skb and XDP
 * dynptrs and slices, open-coded iterators (bpf_for / bpf_repeat written out), dynptr
 * adjust/clone/copy/memset over a global buffer, RCU and preemption sections.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define ETH_P_IP 0x0800

extern int bpf_dynptr_from_skb(struct __sk_buff *s, __u64 flags, struct bpf_dynptr *p) __ksym;
extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags, struct bpf_dynptr *p) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset, void *buffer,
			      __u32 buffer__szk) __ksym;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, __u32 offset, void *buffer,
				   __u32 buffer__szk) __ksym;
extern int bpf_dynptr_adjust(const struct bpf_dynptr *p, __u32 start, __u32 end) __ksym;
extern int bpf_dynptr_clone(const struct bpf_dynptr *p, struct bpf_dynptr *clone) __ksym;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;
extern bool bpf_dynptr_is_null(const struct bpf_dynptr *p) __ksym;
extern int bpf_dynptr_copy(struct bpf_dynptr *dst, __u32 dst_off, struct bpf_dynptr *src,
			   __u32 src_off, __u32 size) __ksym;
extern int bpf_dynptr_memset(struct bpf_dynptr *p, __u32 offset, __u32 size, __u8 val) __ksym;
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern void bpf_preempt_disable(void) __ksym;
extern void bpf_preempt_enable(void) __ksym;

/* bpf_for(i, start, end) and bpf_repeat(n), as libbpf >= 1.2 defines them */
#define for_each_num(i, start, end)                                                  \
	for (struct bpf_iter_num ___it __attribute__((aligned(8),                    \
						      cleanup(bpf_iter_num_destroy))), \
	     *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), (void *)0); \
	     ({                                                                      \
		     int *___t = bpf_iter_num_next(&___it);                          \
		     (___t && ((i) = *___t, 1));                                     \
	     });)
#define repeat_n(n)                                                                  \
	for (struct bpf_iter_num ___it __attribute__((aligned(8),                    \
						      cleanup(bpf_iter_num_destroy))), \
	     *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (n)), (void *)0); \
	     bpf_iter_num_next(&___it);)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} proto_bytes SEC(".maps");

__u64 xdp_sum = 0;
__u32 xdp_frames = 0;
char area[64] = {};

/* Count bytes per IP protocol, decrement the IPv4 TTL (checksum fixed incrementally). */
SEC("tc")
int tc_dynptr(struct __sk_buff *skb)
{
	struct bpf_dynptr pkt;
	struct ethhdr ebuf;
	struct iphdr ibuf;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 key;
	__u64 *count;

	if (bpf_dynptr_from_skb(skb, 0, &pkt))
		return TC_ACT_SHOT;
	eth = bpf_dynptr_slice(&pkt, 0, &ebuf, sizeof(ebuf));
	if (!eth)
		return TC_ACT_SHOT;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = bpf_dynptr_slice_rdwr(&pkt, sizeof(*eth), &ibuf, sizeof(ibuf));
	if (!ip)
		return TC_ACT_SHOT;
	key = ip->protocol;
	count = bpf_map_lookup_elem(&proto_bytes, &key);
	if (count)
		__sync_fetch_and_add(count, bpf_dynptr_size(&pkt));
	if (ip->ttl <= 1)
		return TC_ACT_SHOT;
	ip->ttl--;
	{
		/* RFC 1624: the header word holding the TTL went down by 0x0100 */
		__u32 check = ip->check + bpf_htons(0x0100);

		ip->check = check + (check >= 0xffff);
	}
	if (ip == &ibuf)
		bpf_dynptr_write(&pkt, sizeof(*eth), &ibuf, sizeof(ibuf), 0);
	return TC_ACT_OK;
}

/* Sum the payload after the Ethernet header, 4 bytes at a time through slices. */
SEC("xdp")
int xdp_dynptr(struct xdp_md *ctx)
{
	struct bpf_dynptr pkt, body;
	__u32 words, i;
	__u64 sum = 0;
	__u8 buf[4];

	if (bpf_dynptr_from_xdp(ctx, 0, &pkt))
		return XDP_ABORTED;
	if (bpf_dynptr_clone(&pkt, &body) ||
	    bpf_dynptr_adjust(&body, sizeof(struct ethhdr), bpf_dynptr_size(&pkt)))
		return XDP_DROP;
	words = bpf_dynptr_size(&body) / 4;
	for_each_num(i, 0, words)
	{
		__u8 *w = bpf_dynptr_slice(&body, i * 4, buf, sizeof(buf));

		if (!w)
			break;
		sum += w[0] | w[1] << 8 | w[2] << 16 | (__u32)w[3] << 24;
	}
	xdp_sum += sum;
	xdp_frames++;
	return bpf_dynptr_is_null(&body) ? XDP_ABORTED : XDP_PASS;
}

struct job {
	__u32 n;
	__u32 fill;
	__u32 copy_from;
	__u32 copy_len;
	__s64 copy_ret;
	__s64 fill_ret;
	__u64 rounds;
};

/* bpf_repeat under RCU and no preemption; copy and memset inside a global buffer. */
SEC("syscall")
int jobs(struct job *j)
{
	struct bpf_dynptr all, half;
	__u64 rounds = 0;

	bpf_rcu_read_lock();
	repeat_n(j->n)
		rounds++;
	bpf_rcu_read_unlock();
	bpf_preempt_disable();
	rounds <<= 1;
	bpf_preempt_enable();
	j->rounds = rounds;

	bpf_dynptr_from_mem(area, sizeof(area), 0, &all);
	bpf_dynptr_clone(&all, &half);
	bpf_dynptr_adjust(&half, 32, 64);
	j->copy_ret = bpf_dynptr_copy(&half, 0, &all, j->copy_from, j->copy_len);
	j->fill_ret = bpf_dynptr_memset(&all, j->fill, 8, 0xee);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
