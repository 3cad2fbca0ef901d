// SPDX-License-Identifier: GPL-2.0
/* An XDP forwarder: picks an egress device, a CPU or an AF_XDP socket per packet and
 * redirects there through DEVMAP / DEVMAP_HASH / CPUMAP / XSKMAP, with the "fallback
 * action in the flags" idiom for missing entries, and plain bpf_redirect for a default
 * port.  Verdict counts per (program, action) go to a per-CPU hash.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(max_entries, 16);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 16);
} ports_by_id SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
	__uint(max_entries, 4);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4);
} xsks SEC(".maps");

struct verdict_key {
	__u32 prog;
	__u32 action;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct verdict_key);
	__type(value, __u64);
	__uint(max_entries, 64);
} verdicts SEC(".maps");

const volatile __u32 default_ifindex = 1;

static __always_inline int done(__u32 prog, int action)
{
	struct verdict_key k = { .prog = prog, .action = action };
	__u64 *v = bpf_map_lookup_elem(&verdicts, &k), one = 1;

	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&verdicts, &k, &one, BPF_NOEXIST);
	return action;
}

SEC("xdp")
int forward(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	__u32 sel, key;

	if (data + 16 > data_end)
		return done(0, XDP_ABORTED);
	sel = data[14];
	key = data[15];
	switch (sel) {
	case 0:
		return done(0, bpf_redirect_map(&ports, key, XDP_PASS));
	case 1:
		return done(0, bpf_redirect_map(&ports_by_id, key, XDP_DROP));
	case 2:
		return done(0, bpf_redirect_map(&cpus, key, XDP_PASS));
	case 3:
		return done(0, bpf_redirect_map(&xsks, key, XDP_PASS));
	case 4:
		return done(0, bpf_redirect_map(&ports, key, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS));
	case 5:
		return done(0, bpf_redirect(default_ifindex, 0));
	default:
		if (bpf_map_lookup_elem(&ports, &key))
			return done(1, XDP_TX);
		return done(1, XDP_PASS);
	}
}

char LICENSE[] SEC("license") = "GPL";
