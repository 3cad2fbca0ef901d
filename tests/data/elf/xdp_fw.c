// SPDX-License-Identifier: GPL-2.0
/* An XDP firewall: LPM blocklist (pinned), per-CPU counters, config in .rodata,
 * a static and a global subprogram, .data/.bss globals, and an xdp.frags variant. */
#include "common.h"

struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key);
	__type(value, __u32);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, 4);
} counters SEC(".maps");

const volatile __u32 drop_action = XDP_DROP;
const volatile __u8 verbose = 0;
__u64 packets_seen = 0;
__u32 last_saddr;
__u16 port_table[4] = {22, 80, 443, 8080};

static __attribute__((noinline)) int parse_ipv4(void *data, void *data_end, __u32 *saddr)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	*saddr = ip->saddr;
	return ip->protocol;
}

__attribute__((noinline)) int count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &slot);

	if (!value)
		return 0;
	*value += 1;
	return 1;
}

static __always_inline int decide(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lpm_key key = {.prefixlen = 32};
	__u32 saddr = 0;
	int proto;

	packets_seen++;
	proto = parse_ipv4(data, data_end, &saddr);
	if (proto < 0) {
		count(0);
		return XDP_PASS;
	}
	last_saddr = saddr;
	key.addr = saddr;
	if (bpf_map_lookup_elem(&blocklist, &key)) {
		count(1);
		return drop_action;
	}
	count(2);
	return XDP_PASS;
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	return decide(ctx);
}

SEC("xdp.frags")
int xdp_firewall_frags(struct xdp_md *ctx)
{
	if (verbose)
		count(3);
	return decide(ctx);
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return port_table[ctx->rx_queue_index & 3] ? XDP_PASS : XDP_ABORTED;
}

char _license[] SEC("license") = "GPL";
