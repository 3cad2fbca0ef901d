/* CO-RE against the running kernel's BTF: task_struct fields and friends. No maps and no
 * global data, so `bpftool prog loadall` can load it (libbpf applies the relocations) and
 * the tests compare the kernel's xlated instructions with ours. No branches on relocated
 * values: the verifier would remove the dead side and shift instruction indices. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___mine {
	int pid;
	int tgid;
	int no_such_field;
} __attribute__((preserve_access_index));

struct no_such_type___x {
	int a;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_getpid")
int task_fields(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	long r = ctx->id + ctx->args[1]; /* LDX relocations on the context */

	r += bpf_core_field_offset(t->pid);
	r += bpf_core_field_offset(t->tgid) * 3;
	r += bpf_core_field_size(t->comm);
	r += bpf_core_field_offset(t->comm);
	r += bpf_core_field_exists(t->pid);
	r += bpf_core_field_offset(t->mm);
	r += bpf_core_field_offset(t->real_parent);
	r += bpf_core_field_offset(t->se.vruntime);
	r += bpf_core_field_size(t->se.vruntime);
	r += bpf_core_field_offset(t->thread_info.flags);
	r += __builtin_preserve_field_info(t->sched_reset_on_fork, BPF_FIELD_BYTE_OFFSET);
	r += __builtin_preserve_field_info(t->sched_reset_on_fork, BPF_FIELD_BYTE_SIZE) * 5;
	r += __builtin_preserve_field_info(t->sched_reset_on_fork, BPF_FIELD_LSHIFT_U64) * 7;
	r += __builtin_preserve_field_info(t->sched_reset_on_fork, BPF_FIELD_RSHIFT_U64) * 11;
	r += __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED) * 13;
	r += bpf_core_type_size(struct task_struct);
	r += bpf_core_type_exists(struct task_struct___mine) * 17;
	r += bpf_core_type_exists(struct no_such_type___x) * 19;
	r += bpf_core_field_exists(struct task_struct___mine, no_such_field) * 23;
	r += bpf_core_field_offset(struct task_struct___mine, tgid);
	r += bpf_core_type_matches(struct list_head) * 29;
	r += bpf_core_enum_value_exists(enum bpf_prog_type, BPF_PROG_TYPE_XDP) * 31;
	r += bpf_core_enum_value(enum bpf_prog_type, BPF_PROG_TYPE_SYSCALL);
	r += bpf_core_type_id_kernel(struct task_struct);
	return r;
}

SEC("raw_tracepoint/sys_enter")
int raw_args(struct bpf_raw_tracepoint_args *ctx)
{
	return ctx->args[1] + bpf_core_field_offset(struct file, f_inode);
}

char LICENSE[] SEC("license") = "GPL";
