// SPDX-License-Identifier: GPL-2.0
/* CO-RE the way tracing tools use it, run as a BPF_PROG_TYPE_SYSCALL program.
 *
 * The context carries an IPv4 + TCP header in the kernel's own struct layouts (from
 * vmlinux.h, preserve_access_index); the program reads them with BPF_CORE_READ and
 * BPF_CORE_READ_BITFIELD(_PROBED), builds a struct sock_common on its stack and reads it back,
 * and answers feature questions with bpf_core_field_exists / _size / _offset,
 * bpf_core_type_exists / _size, bpf_core_enum_value(_exists) — including on "___old"
 * flavours that do not match anything in the running kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct probe_ctx {
	struct iphdr ip;
	struct tcphdr tcp;
	__u64 out[16];
};

/* a flavour with a field no kernel has */
struct task_struct___old {
	int no_such_field_here;
	int pid;
} __attribute__((preserve_access_index));

enum bpf_map_type___future {
	BPF_MAP_TYPE_TELEPORT___future = 1000,
	BPF_MAP_TYPE_RINGBUF___future = 27,
};

struct no_such_struct___x {
	int a;
} __attribute__((preserve_access_index));

__u64 runs = 0;
__u32 last_saddr = 0;

SEC("syscall")
int probe(struct probe_ctx *ctx)
{
	struct iphdr *ip = &ctx->ip;
	struct tcphdr *th = &ctx->tcp;
	struct sock_common sc = {};
	__u64 *o = ctx->out;

	runs++;
	o[0] = BPF_CORE_READ(ip, saddr);
	o[1] = BPF_CORE_READ(ip, daddr);
	o[2] = BPF_CORE_READ_BITFIELD_PROBED(ip, ihl) | BPF_CORE_READ_BITFIELD_PROBED(ip, version) << 8;
	o[3] = BPF_CORE_READ_BITFIELD_PROBED(th, syn) | BPF_CORE_READ_BITFIELD_PROBED(th, ack) << 1 |
	       BPF_CORE_READ_BITFIELD_PROBED(th, fin) << 2 | BPF_CORE_READ_BITFIELD_PROBED(th, doff) << 8;
	o[4] = BPF_CORE_READ(th, dest);

	sc.skc_daddr = o[1];
	sc.skc_rcv_saddr = o[0];
	sc.skc_dport = o[4];
	sc.skc_family = 2;
	o[5] = BPF_CORE_READ(&sc, skc_daddr) ^ BPF_CORE_READ(&sc, skc_rcv_saddr);
	o[6] = (__u64)BPF_CORE_READ(&sc, skc_dport) << 16 | BPF_CORE_READ(&sc, skc_family);

	o[7] = bpf_core_field_exists(struct task_struct, pid) |
	       bpf_core_field_exists(struct task_struct___old, no_such_field_here) << 1 |
	       bpf_core_field_exists(struct task_struct___old, pid) << 2;
	o[8] = bpf_core_field_size(struct task_struct, comm) | (__u64)bpf_core_field_size(struct iphdr, saddr) << 16;
	o[9] = bpf_core_field_offset(struct iphdr, daddr) | (__u64)bpf_core_field_offset(struct tcphdr, window) << 16;
	o[10] = bpf_core_type_exists(struct bpf_map) | bpf_core_type_exists(struct no_such_struct___x) << 1;
	o[11] = bpf_core_type_size(struct iphdr) | (__u64)bpf_core_type_size(struct sock_common) << 16;
	o[12] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF) |
		(__u64)bpf_core_enum_value_exists(enum bpf_map_type___future, BPF_MAP_TYPE_TELEPORT___future) << 16 |
		(__u64)bpf_core_enum_value_exists(enum bpf_map_type___future, BPF_MAP_TYPE_RINGBUF___future) << 17;
	o[13] = bpf_core_field_exists(ip->check) | bpf_core_field_size(th->seq) << 8;
	last_saddr = o[0];
	return o[2] == 0x405 ? 0 : -22;
}

char LICENSE[] SEC("license") = "GPL";
