// SPDX-License-Identifier: GPL-2.0
/* An execsnoop/offcputime-style tracer: tracepoints with CO-RE reads of the current task,
 * events through a perf event array, kernel stacks in a STACK_TRACE map, per-task state in
 * task local storage, and a raw tracepoint with BTF (tp_btf) for sched_switch.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define TASK_COMM_LEN 16

struct exec_event {
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__s32 stack_id;
	char comm[TASK_COMM_LEN];
	char filename[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} exec_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
	__uint(max_entries, 1024);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} switch_ts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 10240);
} offcpu_ns SEC(".maps");

const volatile __u32 target_tgid = 0;

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct exec_event e = {};
	const char *fname;
	__u64 id = bpf_get_current_pid_tgid();

	if (target_tgid && (id >> 32) != target_tgid)
		return 0;
	e.pid = id >> 32;
	e.ppid = BPF_CORE_READ(task, real_parent, tgid);
	e.uid = bpf_get_current_uid_gid();
	e.stack_id = bpf_get_stackid(ctx, &stacks, 0);
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	fname = (const char *)BPF_CORE_READ(ctx, args[0]);
	bpf_probe_read_user_str(e.filename, sizeof(e.filename), fname);
	bpf_perf_event_output(ctx, &exec_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 now = bpf_ktime_get_ns(), *ts;
	__u32 pid = next->pid;

	ts = bpf_task_storage_get(&switch_ts, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (ts)
		*ts = now;
	ts = bpf_task_storage_get(&switch_ts, next, 0, 0);
	if (ts && *ts) {
		__u64 delta = now - *ts, *total = bpf_map_lookup_elem(&offcpu_ns, &pid);

		if (total)
			__sync_fetch_and_add(total, delta);
		else
			bpf_map_update_elem(&offcpu_ns, &pid, &delta, BPF_NOEXIST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
