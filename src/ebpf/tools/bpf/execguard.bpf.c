// SPDX-License-Identifier: GPL-2.0
/* execguard: SIGKILL a task about to execve a denied path, before the new program runs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "tools.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 dry_run = 0; /* 1: log only, do not kill */

struct path_key {
	char path[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct path_key);
	__type(value, __u64); /* hits */
} denied SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_key);
} scratch SEC(".maps");

struct event {
	__u64 ts_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__s32 signal_ret; /* bpf_send_signal's result (0: sent); 1 when dry_run */
	char comm[TASK_COMM_LEN];
	char path[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

/* Keeps struct event in the object's BTF, so user space decodes records by their C layout. */
const struct event *unused_event __attribute__((unused));

SEC("tracepoint/syscalls/sys_enter_execve")
int execguard_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 zero = 0;
	struct path_key *key = bpf_map_lookup_elem(&scratch, &zero);
	struct event *e;
	__u64 *hits;

	if (!key)
		return 0;
	__builtin_memset(key->path, 0, sizeof(key->path));
	if (bpf_probe_read_user_str(key->path, sizeof(key->path), (const char *)ctx->args[0]) <= 0)
		return 0;
	hits = bpf_map_lookup_elem(&denied, key);
	if (!hits)
		return 0;
	__sync_fetch_and_add(hits, 1);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->ts_ns = bpf_ktime_get_boot_ns();
		e->pid = bpf_get_current_pid_tgid() >> 32;
		e->ppid = parent_tgid();
		e->uid = (__u32)bpf_get_current_uid_gid();
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		__builtin_memcpy(e->path, key->path, sizeof(e->path));
	}
	if (dry_run) {
		if (e) {
			e->signal_ret = 1;
			bpf_ringbuf_submit(e, 0);
		}
		return 0;
	}
	{
		long ret = bpf_send_signal(9 /* SIGKILL */);
		if (e) {
			e->signal_ret = ret;
			bpf_ringbuf_submit(e, 0);
		}
	}
	return 0;
}
