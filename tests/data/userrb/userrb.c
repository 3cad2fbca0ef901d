/* Programs that drain a BPF_MAP_TYPE_USER_RINGBUF with bpf_user_ringbuf_drain (209).
 * Built by build.sh; used by tests/differential/test_user_ringbuf_kernel.py. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef unsigned long long u64;
typedef unsigned int u32;

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} urb SEC(".maps");

/* 0: sum of the first u64 of each sample, 1: samples seen by the callback,
 * 2: samples shorter than 8 bytes, 3: sum of sample sizes, 4: last drain result,
 * 5: sum of the first byte of each sample (bpf_dynptr_data), 6: writes that failed,
 * 7: result of the nested drain */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

struct args {
	u64 flags;    /* drain flags */
	u32 stop_at;  /* the callback returns 1 on this sample (1-based); 0: never */
	u32 mode;     /* bit 0: drain the same ring again from the callback;
	               * bit 1: write the sample's count over its first 8 bytes */
};

struct cb_ctx {
	u64 sum, count, short_samples, bytes, last, write_errs;
	u32 stop_at, mode;
	long nested_ret;
};

static void add(u32 key, u64 value)
{
	u64 *slot = bpf_map_lookup_elem(&stats, &key);
	if (slot)
		*slot += value;
}

static long inner(struct bpf_dynptr *dynptr, void *data)
{
	return 0;
}

static long each(struct bpf_dynptr *dynptr, void *data)
{
	struct cb_ctx *c = data;
	u64 v = 0;
	unsigned char b = 0;
	u32 n;

	c->count++;
	if (bpf_dynptr_read(&v, sizeof(v), dynptr, 0, 0))
		c->short_samples++;
	else
		c->sum += v;
	/* the sample size: the largest n with a readable byte n-1, bounded by 64 */
	for (n = 64; n > 0; n--) {
		if (bpf_dynptr_read(&b, 1, dynptr, n - 1, 0) == 0)
			break;
	}
	c->bytes += n;
	if (n) {
		unsigned char *p = bpf_dynptr_data(dynptr, 0, 1);
		if (p)
			c->last += *p;
	}
	if (c->mode & 1)
		c->nested_ret = bpf_user_ringbuf_drain(&urb, inner, 0, 0);
	if ((c->mode & 2) && bpf_dynptr_write(dynptr, 0, &c->count, sizeof(c->count), 0))
		c->write_errs++;
	if (c->stop_at && c->count == c->stop_at)
		return 1;
	return 0;
}

SEC("syscall")
int drain(struct args *a)
{
	struct cb_ctx c = {};
	long n;

	c.stop_at = a->stop_at;
	c.mode = a->mode;
	n = bpf_user_ringbuf_drain(&urb, each, &c, a->flags);
	add(0, c.sum);
	add(1, c.count);
	add(2, c.short_samples);
	add(3, c.bytes);
	add(4, (u64)n);
	add(5, c.last);
	add(6, c.write_errs);
	add(7, (u64)c.nested_ret);
	return n;
}

SEC("xdp")
int xdp_drain(struct xdp_md *ctx)
{
	struct cb_ctx c = {};
	long n = bpf_user_ringbuf_drain(&urb, each, &c, 0);

	add(0, c.sum);
	add(1, c.count);
	add(4, (u64)n);
	return n >= 0 ? XDP_PASS : XDP_ABORTED;
}
