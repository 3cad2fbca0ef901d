// SPDX-License-Identifier: GPL-2.0
/* Programs calling the helpers of ebpf.vm._helpers_misc as real programs do
 * (tests/differential/test_helpers_misc_kernel.py runs them in the kernel and in the runtime).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define LINE 64
#define MAX_NUMS 8

/* parse_config's context: a NUL-padded line of numbers and the base to parse them in. */
struct config_args {
	char line[LINE];
	__u32 base;
	__u32 pad;
};

__s64 nums[MAX_NUMS] = {};
__u64 unums[MAX_NUMS] = {};
__s64 consumed[MAX_NUMS] = {};
__s32 parsed = 0;
__s32 last_err = 0;

/* Parse up to MAX_NUMS numbers, each with bpf_strtol and bpf_strtoul, until one fails. */
SEC("syscall")
int parse_config(struct config_args *args)
{
	char buf[2 * LINE]; /* the line, then NULs: every parse gets LINE bytes */
	__u32 off = 0, base = args->base;
	int i;

	for (i = 0; i < LINE / 8; i++) {
		((__u64 *)buf)[i] = ((__u64 *)args->line)[i];
		((__u64 *)buf)[LINE / 8 + i] = 0;
	}
	parsed = 0;
	last_err = 0;
	for (i = 0; i < MAX_NUMS; i++) {
		__u64 o = off;
		long v = 0;
		unsigned long u = 0;
		long n, m;

		if (off >= LINE)
			break;
		/* the bound the verifier needs for buf + o (clang would drop a C mask) */
		asm volatile("%[o] &= 63" : [o] "+r"(o));
		n = bpf_strtol(buf + o, LINE, base, &v);
		m = bpf_strtoul(buf + o, LINE, base, &u);
		nums[i] = v;
		unums[i] = m < 0 ? (__u64)m : u;
		consumed[i] = n;
		if (n <= 0) {
			last_err = n;
			break;
		}
		off = o + n;
		parsed++;
	}
	return parsed;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 4);
} events SEC(".maps");

__u64 skb_info[8] = {};

/* What a tc program learns about the packet's socket, its cgroup and namespace. */
SEC("tc")
int classify(struct __sk_buff *skb)
{
	struct bpf_perf_event_value val = {};

	skb_info[0] = bpf_get_socket_uid(skb);
	skb_info[1] = bpf_skb_cgroup_id(skb);
	skb_info[2] = bpf_skb_ancestor_cgroup_id(skb, 0);
	skb_info[3] = bpf_skb_ancestor_cgroup_id(skb, 1);
	skb_info[4] = bpf_get_netns_cookie(skb);
	skb_info[5] = bpf_perf_event_read(&events, BPF_F_CURRENT_CPU);
	skb_info[6] = bpf_perf_event_read_value(&events, 0, &val, sizeof(val));
	skb_info[7] = val.counter + val.enabled + val.running;
	return skb_info[0] == 0 ? 0 : 2; /* TC_ACT_OK : TC_ACT_SHOT */
}

__u64 who[8] = {};

/* The current task as seen from its pid namespace and cgroup; args: the namespace's dev, ino. */
SEC("raw_tp/sys_enter")
int whoami(struct bpf_raw_tracepoint_args *ctx)
{
	struct bpf_pidns_info ns = {};

	who[0] = bpf_get_ns_current_pid_tgid(ctx->args[0], ctx->args[1], &ns, sizeof(ns));
	who[1] = ((__u64)ns.tgid << 32) | ns.pid;
	who[2] = bpf_get_current_ancestor_cgroup_id(0);
	who[3] = bpf_get_current_ancestor_cgroup_id(1);
	who[4] = bpf_get_current_cgroup_id();
	who[5] = bpf_send_signal(0);
	who[6] = bpf_send_signal_thread(65);
	return who[0] == 0;
}
