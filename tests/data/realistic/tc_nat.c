// SPDX-License-Identifier: GPL-2.0
/* tc programs from the gateway toolbox: NAT64 with bpf_skb_change_proto, redirects,
 * FIB and socket lookups, tunnel metadata, classid/realm.  One feature per program.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define AF_INET 2

__s64 out[8] = {};

/* IPv4 -> IPv6: grow the header by 20 bytes and write a v4-mapped IPv6 header */
SEC("tc")
int nat64(struct __sk_buff *skb)
{
	struct iphdr ip4;
	struct ipv6hdr ip6 = {};
	__u16 proto6 = bpf_htons(ETH_P_IPV6);

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip4, sizeof(ip4)) < 0 || ip4.ihl != 5)
		return TC_ACT_SHOT;
	out[0] = bpf_skb_change_proto(skb, proto6, 0);
	if (out[0])
		return TC_ACT_SHOT;
	ip6.version = 6;
	ip6.payload_len = bpf_htons(bpf_ntohs(ip4.tot_len) - 20);
	ip6.nexthdr = ip4.protocol;
	ip6.hop_limit = ip4.ttl;
	ip6.saddr.in6_u.u6_addr32[2] = bpf_htonl(0xffff);
	ip6.saddr.in6_u.u6_addr32[3] = ip4.saddr;
	ip6.daddr.in6_u.u6_addr32[0] = bpf_htonl(0x0064ff9b);
	ip6.daddr.in6_u.u6_addr32[3] = ip4.daddr;
	out[1] = bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), 0);
	out[2] = bpf_skb_store_bytes(skb, 12, &proto6, 2, 0);
	out[3] = skb->len | (__u64)skb->protocol << 32;
	return TC_ACT_OK;
}

SEC("tc")
int redirects(struct __sk_buff *skb)
{
	__u32 sel = skb->mark;

	if (sel == 1)
		return bpf_redirect(1, 0);
	if (sel == 2)
		return bpf_redirect(1, BPF_F_INGRESS);
	if (sel == 3)
		return bpf_redirect_neigh(1, NULL, 0, 0);
	if (sel == 4)
		return bpf_redirect_peer(1, 0);
	return bpf_redirect(0, 0xff);
}

SEC("tc")
int lookups(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_sock_tuple tuple = {};
	struct bpf_tunnel_key key = {};
	struct bpf_sock *sk;

	fib.family = AF_INET;
	fib.ifindex = 1;
	fib.ipv4_src = bpf_htonl(0x7f000001);
	fib.ipv4_dst = bpf_htonl(0x7f000001);
	fib.tot_len = 40;
	out[4] = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	tuple.ipv4.saddr = bpf_htonl(0x7f000001);
	tuple.ipv4.daddr = bpf_htonl(0x7f000001);
	tuple.ipv4.sport = bpf_htons(1);
	tuple.ipv4.dport = bpf_htons(1);
	sk = bpf_sk_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	out[5] = sk != NULL;
	if (sk)
		bpf_sk_release(sk);
	out[6] = bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0);
	out[7] = bpf_get_cgroup_classid(skb) | (__u64)bpf_get_route_realm(skb) << 32;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
