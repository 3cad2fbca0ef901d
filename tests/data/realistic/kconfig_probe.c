// SPDX-License-Identifier: GPL-2.0
/* What tools read about the running kernel: .kconfig externs (LINUX_KERNEL_VERSION,
 * CONFIG_* of every kind: int, bool, tristate, string, a weak one the kernel lacks).
 * Run as a SYSCALL program; the answers go to the context.  (Typed per-CPU __ksym
 * variables are left out: this kernel's kallsyms has no per-CPU symbols, libbpf fails too.)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_JIT __kconfig __weak;
extern bool CONFIG_NO_SUCH_OPTION_XYZ __kconfig __weak;
extern enum libbpf_tristate CONFIG_BPF_STREAM_PARSER __kconfig __weak;
extern char CONFIG_LOCALVERSION[32] __kconfig __weak;

struct answers {
	__u64 v[8];
};

SEC("syscall")
int kconfig(struct answers *a)
{
	a->v[0] = LINUX_KERNEL_VERSION;
	a->v[1] = CONFIG_HZ;
	a->v[2] = CONFIG_BPF_JIT;
	a->v[3] = CONFIG_NO_SUCH_OPTION_XYZ;
	a->v[4] = CONFIG_BPF_STREAM_PARSER;
	a->v[5] = CONFIG_LOCALVERSION[0] | (__u64)CONFIG_LOCALVERSION[1] << 8;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
