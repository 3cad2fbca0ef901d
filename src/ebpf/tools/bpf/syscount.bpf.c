// SPDX-License-Identifier: GPL-2.0
/* syscount: system call counts and latency, per syscall or per process (raw_syscalls tracepoints). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 targ_pid = 0;      /* only this process; 0: all */
const volatile __u32 by_process = 0;    /* 1: key by pid instead of syscall number */
const volatile __u32 measure_latency = 1;

struct sc_stat {
	__u64 count;
	__u64 total_ns;
	__u64 errors;
	char comm[TASK_COMM_LEN]; /* per-process mode: the process's name */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32); /* syscall number, or pid */
	__type(value, struct sc_stat);
} stats SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int syscount_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	__u64 ts;

	if (targ_pid && (id >> 32) != targ_pid)
		return 0;
	if (measure_latency) {
		ts = bpf_ktime_get_ns();
		bpf_map_update_elem(&starts, &tid, &ts, BPF_ANY);
	}
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int syscount_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, key;
	__u64 *start, delta = 0;
	struct sc_stat *st, zero = {};

	if (targ_pid && (id >> 32) != targ_pid)
		return 0;
	if (ctx->id < 0) /* no syscall (e.g. a restarted one) */
		return 0;
	if (measure_latency) {
		start = bpf_map_lookup_elem(&starts, &tid);
		if (!start)
			return 0; /* entered before we attached */
		delta = bpf_ktime_get_ns() - *start;
		bpf_map_delete_elem(&starts, &tid);
	}
	key = by_process ? (__u32)(id >> 32) : (__u32)ctx->id;
	st = bpf_map_lookup_elem(&stats, &key);
	if (!st) {
		if (by_process)
			bpf_get_current_comm(zero.comm, sizeof(zero.comm));
		bpf_map_update_elem(&stats, &key, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stats, &key);
		if (!st)
			return 0;
	}
	__sync_fetch_and_add(&st->count, 1);
	__sync_fetch_and_add(&st->total_ns, delta);
	if (ctx->ret < 0)
		__sync_fetch_and_add(&st->errors, 1);
	return 0;
}
