// SPDX-License-Identifier: GPL-2.0
/* Legacy cgroup storage and cgroup arrays: the programs of tests/differential/test_cgroup_maps_kernel.py.
 *
 * count_egress / count_ingress / count_locked add to their cgroup storage (bpf_get_local_storage;
 * count_locked under the value's bpf_spin_lock) and record what they saw in `seen` and in
 * skb->cb; task_under and skb_under record the answers of
 * bpf_current_task_under_cgroup and bpf_skb_under_cgroup for every index of `cgroups` (and
 * one past the end).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, __u64);
} counter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, __u32);
} pcpu_counter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, __u64);
} shared SEC(".maps");

struct locked_value {
	struct bpf_spin_lock lock;
	__u32 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, struct locked_value);
} locked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

#define NCGROUPS 4

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, NCGROUPS);
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NCGROUPS + 1);
	__type(key, __u32);
	__type(value, __s64);
} under SEC(".maps");

static void record(__u32 key, __u64 value)
{
	bpf_map_update_elem(&seen, &key, &value, BPF_ANY);
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	__u64 *c = bpf_get_local_storage(&counter, 0);
	__u32 *p = bpf_get_local_storage(&pcpu_counter, 0);

	*c += 1;
	*p += 2;
	record(0, *c);
	record(1, *p);
	skb->cb[0] = *c;
	skb->cb[1] = *p;
	return *c & 1;
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	__u64 *s = bpf_get_local_storage(&shared, 0);

	*s += skb->len;
	record(2, *s);
	skb->cb[2] = *s;
	return 1;
}

SEC("cgroup_skb/ingress")
int count_locked(struct __sk_buff *skb)
{
	struct locked_value *v = bpf_get_local_storage(&locked, 0);
	__u32 n;

	bpf_spin_lock(&v->lock);
	n = ++v->n;
	bpf_spin_unlock(&v->lock);
	record(3, n);
	return 1;
}

SEC("raw_tp")
int task_under(void *ctx)
{
	for (__u32 i = 0; i <= NCGROUPS; i++) {
		__s64 r = bpf_current_task_under_cgroup(&cgroups, i);
		__u32 k = i;

		bpf_map_update_elem(&under, &k, &r, BPF_ANY);
	}
	return 0;
}

SEC("tc")
int skb_under(struct __sk_buff *skb)
{
	for (__u32 i = 0; i <= NCGROUPS; i++) {
		__s64 r = bpf_skb_under_cgroup(skb, &cgroups, i);
		__u32 k = i;

		bpf_map_update_elem(&under, &k, &r, BPF_ANY);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
