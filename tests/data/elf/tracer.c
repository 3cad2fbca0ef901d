// SPDX-License-Identifier: GPL-2.0
/* A tracer: ringbuf events, CO-RE reads of task_struct (vmlinux.h), .kconfig externs,
 * a __ksym variable and kfuncs, plus tracing section names that need BTF to load. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct event {
	__u32 pid;
	__u32 ppid;
	__u64 kernel;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(numa_node, 0);
} exec_count SEC(".maps");

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig __weak;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern const int bpf_prog_active __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym __weak;

const volatile __u32 target_pid = 0;

SEC("tracepoint/syscalls/sys_enter_execve")
int trace_execve(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct event *e;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *cnt;

	if (target_pid && pid != target_pid)
		return 0;
	cnt = bpf_map_lookup_elem(&exec_count, &pid);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else
		bpf_map_update_elem(&exec_count, &pid, &one, BPF_ANY);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = pid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->kernel = LINUX_KERNEL_VERSION + (CONFIG_BPF_SYSCALL ? CONFIG_HZ : 0);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp/sched/sched_process_exit")
int trace_exit(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	bpf_map_delete_elem(&exec_count, &pid);
	return 0;
}

SEC("raw_tracepoint/sched_switch")
int raw_switch(struct bpf_raw_tracepoint_args *ctx)
{
	return ctx->args[0] ? 0 : 1;
}

SEC("raw_tp/sched_wakeup")
int raw_wakeup(void *ctx)
{
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(btf_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_struct *t = bpf_task_acquire(child);
	const int *active = bpf_this_cpu_ptr(&bpf_prog_active);

	if (!t)
		return 0;
	if (bpf_rcu_read_lock)
		bpf_rcu_read_lock();
	bpf_task_release(t);
	return *active + BPF_CORE_READ(parent, pid);
}

SEC("kprobe/do_unlinkat")
int BPF_KPROBE(kprobe_unlink, int dfd)
{
	return dfd;
}

SEC("kretprobe/do_unlinkat")
int BPF_KRETPROBE(kretprobe_unlink, long ret)
{
	return ret;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(fentry_unlink, int dfd)
{
	return 0;
}

SEC("fexit/do_unlinkat")
int BPF_PROG(fexit_unlink, int dfd, struct filename *name, long ret)
{
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(lsm_open, struct file *file)
{
	return 0;
}

SEC("iter/task")
int iter_tasks(struct bpf_iter__task *ctx)
{
	return ctx->task ? 0 : 1;
}

SEC("uprobe.s//bin/bash:readline")
int uprobe_readline(struct pt_regs *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
