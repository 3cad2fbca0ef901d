// SPDX-License-Identifier: GPL-2.0
/* Program types the kernel can also test-run: a flow dissector (fills bpf_flow_keys from
 * the packet), an sk_lookup steering program and a netfilter hook.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define NF_ACCEPT 1
#define NF_DROP 0

__u32 lookups = 0;

SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	struct iphdr ip;
	__u16 ports[2];

	if (bpf_skb_load_bytes(skb, keys->nhoff, &ip, sizeof(ip)) < 0)
		return BPF_DROP;
	if (ip.version != 4 || ip.ihl < 5)
		return BPF_DROP;
	keys->addr_proto = bpf_htons(ETH_P_IP);
	keys->ipv4_src = ip.saddr;
	keys->ipv4_dst = ip.daddr;
	keys->ip_proto = ip.protocol;
	keys->thoff = keys->nhoff + ip.ihl * 4;
	keys->is_frag = !!(ip.frag_off & bpf_htons(0x3fff));
	if ((ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) &&
	    bpf_skb_load_bytes(skb, keys->thoff, ports, 4) == 0) {
		keys->sport = ports[0];
		keys->dport = ports[1];
	}
	return BPF_OK;
}

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	lookups++;
	if (ctx->local_port == 7777)
		return SK_DROP;
	return SK_PASS;
}

SEC("netfilter")
int nf_hook(struct bpf_nf_ctx *ctx)
{
	const struct nf_hook_state *state = ctx->state;

	lookups += 100;
	return state->hook == 1 ? NF_DROP : NF_ACCEPT;
}

char LICENSE[] SEC("license") = "GPL";
