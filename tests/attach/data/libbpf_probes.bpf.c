// SPDX-License-Identifier: GPL-2.0
/* Programs written for libbpf, unchanged: a USDT program using usdt.bpf.h (BPF_USDT), a
 * uprobe with BPF_KPROBE, and a tracepoint; loaded by ebpf.kernel.Collection and attached
 * with ebpf.attach in tests/attach/test_libbpf_objects.py; the ones whose section names a
 * target also attach by section (attach.auto). Build: data/build.sh */
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void add(__u32 slot, __u64 value)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);

	if (v)
		__sync_fetch_and_add(v, value);
}

SEC("usdt")
int BPF_USDT(on_tick, int i, long total)
{
	add(0, i);
	add(1, total);
	add(2, 1);
	add(3, bpf_usdt_cookie(ctx));
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(on_add, long a, long b)
{
	add(4, b);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_add_ret, long ret)
{
	add(5, ret);
	return 0;
}

const volatile __u32 target_pid = 0; /* set before load from Python */

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if (mine())
		add(6, 1);
	return 0;
}

SEC("raw_tp/sys_enter")
int on_sys_enter(void *ctx)
{
	if (mine())
		add(7, 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int on_sys_enter_btf(__u64 *ctx)
{
	if (mine())
		add(8, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
