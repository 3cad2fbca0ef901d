// SPDX-License-Identifier: GPL-2.0
/* The identity helpers every tracer calls, from a SYSCALL program run by the test process
 * itself: pid/tgid, uid/gid, comm, CPU, NUMA node and cgroup id of the caller, plus a
 * string compare and a formatted line of them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct who {
	__u64 pid_tgid;
	__u64 uid_gid;
	__u64 cgroup_id;
	__u32 cpu;
	__u32 numa;
	char comm[16];
	char line[64];
	__s64 line_len;
	__s64 is_python;
};

char line[64] = {};

SEC("syscall")
int whoami(struct who *w)
{
	__u64 args[3];
	char comm[16];

	w->pid_tgid = bpf_get_current_pid_tgid();
	w->uid_gid = bpf_get_current_uid_gid();
	w->cgroup_id = bpf_get_current_cgroup_id();
	w->cpu = bpf_get_smp_processor_id();
	w->numa = bpf_get_numa_node_id();
	bpf_get_current_comm(comm, sizeof(comm));
	__builtin_memcpy(w->comm, comm, sizeof(comm));
	args[0] = w->pid_tgid >> 32;
	args[1] = (__u32)w->uid_gid;
	args[2] = (__u64)comm;
	w->line_len = bpf_snprintf(line, sizeof(line), "pid %d uid %u comm %s", args, sizeof(args));
	__builtin_memcpy(w->line, line, sizeof(line));
	w->is_python = bpf_strncmp(comm, 6, "python");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
