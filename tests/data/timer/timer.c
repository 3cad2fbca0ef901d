// SPDX-License-Identifier: GPL-2.0
/* bpf_timer programs for tests/vm/test_helpers_timer.py and
 * tests/differential/test_timer_kernel.py: one SEC("syscall") program that performs one timer
 * operation per test run on an element of an array, hash or LRU hash map, and callbacks
 * that count, cancel themselves, cancel another timer, re-arm themselves or delete their own
 * element.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EINVAL 22
#define ENOENT 2

enum op { OP_INIT, OP_SET_CALLBACK, OP_START, OP_CANCEL, OP_NOW };
enum cb { CB_COUNT, CB_CANCEL_SELF, CB_REARM, CB_CANCEL_FIRST, CB_DELETE_SELF };

struct args {
	__u32 op;
	__u32 map;  /* 0 array, 1 hash, 2 LRU hash */
	__u32 key;
	__u32 cb;
	__u64 arg;  /* init: flags (clockid); start: nsecs; set_callback: re-arm period */
	__u64 flags;  /* start: flags; set_callback: re-arm limit */
	__u64 add_now;  /* start: add bpf_ktime_get_ns() to nsecs (for BPF_F_TIMER_ABS) */
};

struct elem {
	struct bpf_timer t;
	__u64 count;  /* callbacks run */
	__u64 key_seen;  /* the key the last callback got */
	__u64 ret;  /* what the last callback's bpf_timer_cancel / start returned */
	__u64 period;  /* CB_REARM: re-arm after this many ns ... */
	__u64 limit;  /* ... until count reaches limit */
	__u64 map_ok;  /* the callback's map argument was the element's map */
	__u64 fired_at;  /* bpf_ktime_get_ns() in the last callback */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct elem);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct elem);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct elem);
} lru SEC(".maps");

static __always_inline int map_ok(void *map)
{
	return map == (void *)&arr || map == (void *)&hash || map == (void *)&lru;
}

static int cb_count(void *map, __u32 *key, struct elem *val)
{
	val->count++;
	val->key_seen = *key;
	val->map_ok = map_ok(map);
	val->fired_at = bpf_ktime_get_ns();
	return 0;
}

static int cb_cancel_self(void *map, __u32 *key, struct elem *val)
{
	val->count++;
	val->key_seen = *key;
	val->ret = bpf_timer_cancel(&val->t);
	return 0;
}

static int cb_rearm(void *map, __u32 *key, struct elem *val)
{
	val->count++;
	val->key_seen = *key;
	val->fired_at = bpf_ktime_get_ns();
	if (val->count < val->limit)
		val->ret = bpf_timer_start(&val->t, val->period, 0);
	return 0;
}

static int cb_cancel_first(void *map, __u32 *key, struct elem *val)
{
	__u32 zero = 0;
	struct elem *first = bpf_map_lookup_elem(&arr, &zero);

	val->count++;
	val->key_seen = *key;
	if (first)
		val->ret = bpf_timer_cancel(&first->t);
	return 0;
}

/* Deletes its own element, then tries to re-arm the freed timer and init it again; the
 * answers go to array element 3 (ret: start, period: init) and count there counts the runs. */
static int cb_delete_self(void *map, __u32 *key, struct elem *val)
{
	__u32 k = *key, three = 3;
	struct elem *out = bpf_map_lookup_elem(&arr, &three);

	bpf_map_delete_elem(map, &k);
	if (out) {
		out->count++;
		out->key_seen = k;
		out->ret = bpf_timer_start(&val->t, 0, 0);
		out->period = bpf_timer_cancel(&val->t);
	}
	return 0;
}

/* One timer operation on the element of map M (a macro: the verifier wants the map of
 * bpf_timer_init to be the map the timer's element came from, on every path). */
#define TIMER_OP(M)								\
	({									\
		__u32 key = a->key;						\
		struct elem *val = bpf_map_lookup_elem(&M, &key);		\
		__u64 nsecs;							\
		int ret = -EINVAL;						\
										\
		if (!val)							\
			return -ENOENT;						\
		switch (a->op) {						\
		case OP_INIT:							\
			ret = bpf_timer_init(&val->t, &M, a->arg);		\
			break;							\
		case OP_SET_CALLBACK:						\
			val->period = a->arg;					\
			val->limit = a->flags;					\
			if (a->cb == CB_CANCEL_SELF)				\
				ret = bpf_timer_set_callback(&val->t, cb_cancel_self); \
			else if (a->cb == CB_REARM)				\
				ret = bpf_timer_set_callback(&val->t, cb_rearm); \
			else if (a->cb == CB_CANCEL_FIRST)			\
				ret = bpf_timer_set_callback(&val->t, cb_cancel_first); \
			else if (a->cb == CB_DELETE_SELF)			\
				ret = bpf_timer_set_callback(&val->t, cb_delete_self); \
			else							\
				ret = bpf_timer_set_callback(&val->t, cb_count); \
			break;							\
		case OP_START:							\
			nsecs = a->arg;						\
			if (a->add_now)						\
				nsecs += bpf_ktime_get_ns();			\
			ret = bpf_timer_start(&val->t, nsecs, a->flags);	\
			break;							\
		case OP_CANCEL:							\
			ret = bpf_timer_cancel(&val->t);			\
			break;							\
		}								\
		ret;								\
	})

SEC("syscall")
int timer_op(struct args *a)
{
	if (a->map == 1)
		return TIMER_OP(hash);
	if (a->map == 2)
		return TIMER_OP(lru);
	return TIMER_OP(arr);
}

/* The same operations from XDP (a packet program), on the array only: the frame's first
 * bytes are a struct args. */
SEC("xdp")
int timer_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct args *a = data;
	struct elem *val;
	__u32 key;

	if ((void *)(a + 1) > end)
		return XDP_ABORTED;
	key = a->key;
	val = bpf_map_lookup_elem(&arr, &key);
	if (!val)
		return XDP_ABORTED;
	switch (a->op) {
	case OP_INIT:
		val->ret = bpf_timer_init(&val->t, &arr, a->arg);
		break;
	case OP_SET_CALLBACK:
		val->ret = bpf_timer_set_callback(&val->t, cb_count);
		break;
	case OP_START:
		val->ret = bpf_timer_start(&val->t, a->arg, a->flags);
		break;
	case OP_CANCEL:
		val->ret = bpf_timer_cancel(&val->t);
		break;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
