/* Shared definitions of the bundled tool programs (compiled against vmlinux.h from `ebpf btf dump`). */
#ifndef EBPF_TOOLS_H
#define EBPF_TOOLS_H

#define TASK_COMM_LEN 16
#define PATH_LEN 256

/* CO-RE read of the parent's tgid: task->real_parent->tgid. */
static __always_inline __u32 parent_tgid(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, real_parent, tgid);
}

#endif
