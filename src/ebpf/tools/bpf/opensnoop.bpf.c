// SPDX-License-Identifier: GPL-2.0
/* opensnoop: file opens with their flags, path and result (openat/open enter and exit joined by tid). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 targ_pid = 0;          /* only this process; 0: all */
const volatile __u32 targ_uid = (__u32)-1;  /* only this uid; -1: all */
const volatile __u32 failed_only = 0;

struct start {
	const char *fname;
	__s32 flags;
	__s32 dfd;
};

struct event {
	__u64 ts_ns;
	__u32 pid;
	__u32 uid;
	__s32 ret;
	__s32 flags;
	char comm[TASK_COMM_LEN];
	char path[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

const struct event *unused_event __attribute__((unused));

static __always_inline int record_start(const char *fname, int flags, int dfd)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct start s = {.fname = fname, .flags = flags, .dfd = dfd};

	if (targ_pid && (id >> 32) != targ_pid)
		return 0;
	if (targ_uid != (__u32)-1 && (__u32)bpf_get_current_uid_gid() != targ_uid)
		return 0;
	bpf_map_update_elem(&starts, &tid, &s, BPF_ANY);
	return 0;
}

static __always_inline int record_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	struct event *e;

	if (!s)
		return 0;
	if (failed_only && ret >= 0)
		goto out;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		goto out;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ret = ret;
	e->flags = s->flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(e->path, sizeof(e->path), s->fname);
	bpf_ringbuf_submit(e, 0);
out:
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int opensnoop_openat(struct trace_event_raw_sys_enter *ctx)
{
	return record_start((const char *)ctx->args[1], (int)ctx->args[2], (int)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int opensnoop_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return record_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_open")
int opensnoop_open(struct trace_event_raw_sys_enter *ctx)
{
	return record_start((const char *)ctx->args[0], (int)ctx->args[1], -100 /* AT_FDCWD */);
}

SEC("tracepoint/syscalls/sys_exit_open")
int opensnoop_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	return record_exit(ctx->ret);
}
