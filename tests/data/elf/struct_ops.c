// SPDX-License-Identifier: GPL-2.0
/* struct_ops: programs in struct_ops/ sections plugged into a .struct_ops variable (the
 * kernel's bpf_dummy_ops) and a .struct_ops.link one (a TCP congestion control). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("struct_ops/test_1")
int BPF_PROG(dummy_test_1, struct bpf_dummy_ops_state *state)
{
	return state ? state->val : 0;
}

SEC("struct_ops.s/test_sleepable")
int BPF_PROG(dummy_sleepable, struct bpf_dummy_ops_state *state)
{
	return 0;
}

SEC(".struct_ops")
struct bpf_dummy_ops dummy_ops = {
	.test_1 = (void *)dummy_test_1,
	.test_sleepable = (void *)dummy_sleepable,
};

SEC("struct_ops/ssthresh")
__u32 BPF_PROG(cc_ssthresh, struct sock *sk)
{
	return 10;
}

SEC("struct_ops/undo_cwnd")
__u32 BPF_PROG(cc_undo_cwnd, struct sock *sk)
{
	return 10;
}

SEC("struct_ops/cong_avoid")
void BPF_PROG(cc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC(".struct_ops.link")
struct tcp_congestion_ops ebpf_cc = {
	.ssthresh = (void *)cc_ssthresh,
	.undo_cwnd = (void *)cc_undo_cwnd,
	.cong_avoid = (void *)cc_cong_avoid,
	.name = "ebpf_cc",
};

char _license[] SEC("license") = "GPL";
