// SPDX-License-Identifier: GPL-2.0
/* execsnoop: every execve, with its arguments and result (sys_enter/sys_exit_execve tracepoints). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

#define MAX_ARGS 20
#define ARGS_LEN 1024

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 targ_uid = (__u32)-1; /* only this uid; -1: everyone */
const volatile __u64 targ_cgroup = 0;      /* only this cgroup v2 id; 0: every cgroup */
const volatile __u32 max_args = MAX_ARGS;

struct event {
	__u64 ts_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__s32 retval;
	__u32 argc;     /* arguments captured */
	__u32 args_len; /* bytes used in args: NUL-separated */
	char comm[TASK_COMM_LEN];
	char filename[PATH_LEN];
	char args[ARGS_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct event);
} execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

static __always_inline int wanted(void)
{
	if (targ_uid != (__u32)-1 && (__u32)bpf_get_current_uid_gid() != targ_uid)
		return 0;
	if (targ_cgroup && bpf_get_current_cgroup_id() != targ_cgroup)
		return 0;
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int execsnoop_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 zero = 0, tid = (__u32)bpf_get_current_pid_tgid();
	struct event *e;
	const char **argv;
	const char *arg;
	int i, n;

	if (!wanted())
		return 0;
	e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = parent_tgid();
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->retval = 0;
	e->argc = 0;
	e->args_len = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(e->filename, sizeof(e->filename), (const char *)ctx->args[0]);
	argv = (const char **)ctx->args[1];
	for (i = 1; i < MAX_ARGS && i < max_args; i++) {
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		if (e->args_len > ARGS_LEN - 128)
			break;
		n = bpf_probe_read_user_str(&e->args[e->args_len & (ARGS_LEN - 1)], 128, arg);
		if (n <= 0)
			break;
		e->args_len += n;
		e->argc++;
	}
	bpf_map_update_elem(&execs, &tid, e, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int execsnoop_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct event *e = bpf_map_lookup_elem(&execs, &tid);

	if (!e)
		return 0;
	e->retval = ctx->ret;
	bpf_get_current_comm(e->comm, sizeof(e->comm)); /* the new program's name after a successful exec */
	bpf_ringbuf_output(&events, e, sizeof(*e), 0);
	bpf_map_delete_elem(&execs, &tid);
	return 0;
}
