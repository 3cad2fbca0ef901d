// cpus: v2 v3 v4
// targets: bpfel bpfeb
// Maps in SEC(".maps"), helper calls, global data (.data, .bss, .rodata) and strings.
#include "bpf_mini.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} jumps SEC(".maps");

__u64 packets = 0;
__u32 last_len;
const volatile __u32 threshold = 64;

SEC("xdp") int count(struct xdp_md *ctx)
{
	__u32 key = ctx->ingress_ifindex;
	__u64 one = 1, *val;

	val = bpf_map_lookup_elem(&counts, &key);
	if (val)
		*val += 1;
	else
		bpf_map_update_elem(&counts, &key, &one, 0);
	packets++;
	last_len = ctx->data_end - ctx->data;
	if (last_len < threshold)
		bpf_map_delete_elem(&counts, &key);
	key = 2;
	val = bpf_map_lookup_elem(&totals, &key);
	if (val)
		*val += last_len;
	bpf_trace_printk("len %u\n", sizeof("len %u\n"), last_len);
	bpf_tail_call(ctx, &jumps, 0);
	return XDP_PASS;
}

SEC("tracepoint/syscalls/sys_enter_execve") int trace(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 t = bpf_ktime_get_ns();
	__u32 r = bpf_get_prandom_u32();
	return (id >> 32) + t + r > 5;
}
