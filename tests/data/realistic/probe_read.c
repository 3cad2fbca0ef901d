// SPDX-License-Identifier: GPL-2.0
/* What tracers do with pointers they are handed: read a user string and a user struct
 * through the raw tracepoint arguments (the kernel reads the test process's memory), and
 * probe kernel pointers that are not valid (faults: an error and a zeroed buffer).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct result {
	char path[64];
	__s64 path_len;
	__u64 user_word;
	__s64 user_err;
	__u64 kernel_word;
	__s64 kernel_err;
	__s64 kstr_err;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct result);
	__uint(max_entries, 1);
} results SEC(".maps");

SEC("raw_tp/sys_enter")
int read_args(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct result *r = bpf_map_lookup_elem(&results, &zero);
	char kbuf[16];

	if (!r)
		return 0;
	r->path_len = bpf_probe_read_user_str(r->path, sizeof(r->path), (void *)ctx->args[0]);
	r->user_err = bpf_probe_read_user(&r->user_word, 8, (void *)ctx->args[1]);
	r->kernel_err = bpf_probe_read_kernel(&r->kernel_word, 8, (void *)ctx->args[2]);
	r->kstr_err = bpf_probe_read_kernel_str(kbuf, sizeof(kbuf), (void *)ctx->args[2]);
	return r->path_len;
}

char LICENSE[] SEC("license") = "GPL";
