// SPDX-License-Identifier: GPL-2.0
/* A socket filter that counts protocols and decides how much of each packet to keep.
 *
 * No LD_ABS: the IP header is read with bpf_skb_load_bytes (a socket filter's skb starts at
 * the network header).  Return values are truncation lengths: TCP keeps its headers only,
 * UDP to port 53 is kept whole, ICMP is dropped, anything else keeps `snaplen` bytes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMPV6 58

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 256);
} proto_count SEC(".maps");

struct port_key {
	__u8 family;
	__u8 proto;
	__u16 port;	/* host order */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct port_key);
	__type(value, __u64);
	__uint(max_entries, 128);
} ports SEC(".maps");

const volatile __u32 snaplen = 96;
__u32 bad_headers = 0;
__u64 total_len = 0;

static __always_inline void bump(__u32 proto)
{
	__u64 *c = bpf_map_lookup_elem(&proto_count, &proto);

	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline void port_seen(__u8 family, __u8 proto, __u16 port)
{
	struct port_key k = { .family = family, .proto = proto, .port = port };
	__u64 *v = bpf_map_lookup_elem(&ports, &k), one = 1;

	if (v)
		(*v)++;
	else
		bpf_map_update_elem(&ports, &k, &one, BPF_ANY);
}

SEC("socket")
int sock_proto(struct __sk_buff *skb)
{
	__u8 proto, family;
	__u32 l4, hlen;
	__u16 ports[2];

	total_len += skb->len;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;

		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) < 0)
			goto bad;
		if (bpf_skb_load_bytes(skb, offsetof(struct iphdr, protocol), &proto, 1) < 0)
			goto bad;
		if ((vihl >> 4) != 4 || (vihl & 0xf) < 5)
			goto bad;
		family = 4;
		l4 = (vihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, offsetof(struct ipv6hdr, nexthdr), &proto, 1) < 0)
			goto bad;
		family = 6;
		l4 = sizeof(struct ipv6hdr);
	} else {
		bump(255);
		return snaplen;
	}
	bump(proto);

	switch (proto) {
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return 0;
	case IPPROTO_TCP: {
		__u8 doff;

		if (bpf_skb_load_bytes(skb, l4, ports, 4) < 0)
			goto bad;
		port_seen(family, proto, bpf_ntohs(ports[1]));
		if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1) < 0)
			goto bad;
		hlen = l4 + (doff >> 4) * 4;
		return hlen;
	}
	case IPPROTO_UDP:
		if (bpf_skb_load_bytes(skb, l4, ports, 4) < 0)
			goto bad;
		port_seen(family, proto, bpf_ntohs(ports[1]));
		if (ports[1] == bpf_htons(53) || ports[0] == bpf_htons(53))
			return skb->len;
		return l4 + 8;
	default:
		return snaplen;
	}
bad:
	bad_headers++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
