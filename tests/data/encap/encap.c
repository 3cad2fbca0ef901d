// SPDX-License-Identifier: GPL-2.0
/* Tunnel encapsulation and decapsulation with bpf_skb_adjust_room, the way tc tunnelling
 * programs do it: make room with the BPF_F_ADJ_ROOM_ENCAP_* flags, write the outer headers
 * with bpf_skb_store_bytes (the IPv4 checksum from bpf_csum_diff), or strip them with
 * BPF_F_ADJ_ROOM_DECAP_L3_*. Each program records in `results` what the helpers returned
 * and what skb->protocol became, so a test compares the maps as well as data_out.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

#define VXLAN_PORT 4789
#define ENCAP_VXLAN_LEN (sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr) + ETH_HLEN)

struct gre_base {
	__be16 flags;
	__be16 protocol;
};

struct vxlanhdr {
	__be32 flags;
	__be32 vni;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s64);
} results SEC(".maps");

static __always_inline void record(__u32 slot, __s64 value)
{
	__s64 *p = bpf_map_lookup_elem(&results, &slot);

	if (p)
		*p = value;
}

static __always_inline __u16 fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* The outer IPv4 header for an inner IPv4 packet `inner` carried in `proto` after `extra`
 * more bytes of tunnel headers. */
static __always_inline void outer_ipv4(struct iphdr *outer, const struct iphdr *inner, __u8 proto, __u16 extra)
{
	__builtin_memset(outer, 0, sizeof(*outer));
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = inner->tos;
	outer->ttl = 64;
	outer->protocol = proto;
	outer->tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(*outer) + extra);
	outer->saddr = bpf_htonl(0x0a010001); /* 10.1.0.1 */
	outer->daddr = bpf_htonl(0x0a020002); /* 10.2.0.2 */
	outer->check = fold(bpf_csum_diff(0, 0, (__be32 *)outer, sizeof(*outer), 0));
}

static __always_inline int inner_ipv4(struct __sk_buff *skb, struct iphdr *inner)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	return bpf_skb_load_bytes(skb, ETH_HLEN, inner, sizeof(*inner));
}

SEC("tc")
int encap_ipip(struct __sk_buff *skb)
{
	struct iphdr inner, outer;
	long ret;

	if (inner_ipv4(skb, &inner))
		return TC_ACT_SHOT;
	ret = bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC,
				  BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO);
	record(0, ret);
	if (ret)
		return TC_ACT_SHOT;
	outer_ipv4(&outer, &inner, IPPROTO_IPIP, 0);
	record(1, bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0));
	record(2, skb->protocol);
	/* a tunnel inside the tunnel: the skb is encapsulated already */
	record(3, bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4));
	return TC_ACT_OK;
}

SEC("tc")
int encap_gre(struct __sk_buff *skb)
{
	struct {
		struct iphdr ip;
		struct gre_base gre;
	} __attribute__((packed)) hdr;
	struct iphdr inner, outer;
	long ret;

	if (inner_ipv4(skb, &inner))
		return TC_ACT_SHOT;
	ret = bpf_skb_adjust_room(skb, sizeof(hdr), BPF_ADJ_ROOM_MAC,
				  BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_GRE);
	record(0, ret);
	if (ret)
		return TC_ACT_SHOT;
	outer_ipv4(&outer, &inner, IPPROTO_GRE, sizeof(hdr.gre));
	__builtin_memcpy(&hdr.ip, &outer, sizeof(outer));
	hdr.gre.flags = 0;
	hdr.gre.protocol = bpf_htons(ETH_P_IP);
	record(1, bpf_skb_store_bytes(skb, ETH_HLEN, &hdr, sizeof(hdr), 0));
	record(2, skb->protocol);
	return TC_ACT_OK;
}

SEC("tc")
int encap_vxlan(struct __sk_buff *skb)
{
	struct {
		struct iphdr ip;
		struct udphdr udp;
		struct vxlanhdr vxlan;
		struct ethhdr eth;
	} __attribute__((packed)) hdr;
	struct iphdr inner, outer;
	long ret;

	if (inner_ipv4(skb, &inner))
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(skb, 0, &hdr.eth, sizeof(hdr.eth)))
		return TC_ACT_SHOT;
	ret = bpf_skb_adjust_room(skb, sizeof(hdr), BPF_ADJ_ROOM_MAC,
				  BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
				  BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN));
	record(0, ret);
	if (ret)
		return TC_ACT_SHOT;
	outer_ipv4(&outer, &inner, IPPROTO_UDP, sizeof(hdr) - sizeof(hdr.ip));
	__builtin_memcpy(&hdr.ip, &outer, sizeof(outer));
	hdr.udp.source = bpf_htons(49152 + (bpf_ntohs(inner.id) & 0x3fff));
	hdr.udp.dest = bpf_htons(VXLAN_PORT);
	hdr.udp.len = bpf_htons(bpf_ntohs(inner.tot_len) + sizeof(hdr) - sizeof(hdr.ip));
	hdr.udp.check = 0;
	hdr.vxlan.flags = bpf_htonl(0x08000000);
	hdr.vxlan.vni = bpf_htonl(42 << 8);
	record(1, bpf_skb_store_bytes(skb, ETH_HLEN, &hdr, sizeof(hdr), 0));
	record(2, skb->protocol);
	return TC_ACT_OK;
}

SEC("tc")
int encap_4in6(struct __sk_buff *skb)
{
	struct ipv6hdr outer = {};
	struct iphdr inner;
	__be16 ethertype = bpf_htons(ETH_P_IPV6);
	long ret;

	if (inner_ipv4(skb, &inner))
		return TC_ACT_SHOT;
	ret = bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6);
	record(0, ret);
	if (ret)
		return TC_ACT_SHOT;
	outer.version = 6;
	outer.payload_len = inner.tot_len;
	outer.nexthdr = IPPROTO_IPIP;
	outer.hop_limit = 64;
	outer.saddr.in6_u.u6_addr8[0] = 0xfd;
	outer.saddr.in6_u.u6_addr8[15] = 1;
	outer.daddr.in6_u.u6_addr8[0] = 0xfd;
	outer.daddr.in6_u.u6_addr8[15] = 2;
	record(1, bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0) |
		  bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &ethertype, 2, 0));
	record(2, skb->protocol);
	return TC_ACT_OK;
}

/* Strip whichever of the tunnels above the packet carries. */
SEC("tc")
int decap(struct __sk_buff *skb)
{
	__be16 ethertype = bpf_htons(ETH_P_IP);
	struct iphdr ip;
	struct ipv6hdr ip6;
	struct udphdr udp;
	__u64 flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO;
	int len;
	long ret;

	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_IPIP)
			return TC_ACT_OK;
		len = sizeof(ip6);
	} else if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) || ip.ihl != 5)
			return TC_ACT_OK;
		if (ip.protocol == IPPROTO_IPIP) {
			len = sizeof(ip);
		} else if (ip.protocol == IPPROTO_GRE) {
			len = sizeof(ip) + sizeof(struct gre_base);
		} else if (ip.protocol == IPPROTO_UDP) {
			if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &udp, sizeof(udp)) ||
			    udp.dest != bpf_htons(VXLAN_PORT))
				return TC_ACT_OK;
			len = ENCAP_VXLAN_LEN;
		} else {
			return TC_ACT_OK;
		}
	} else {
		return TC_ACT_OK;
	}
	ret = bpf_skb_adjust_room(skb, -len, BPF_ADJ_ROOM_MAC, flags);
	record(0, ret);
	if (ret)
		return TC_ACT_SHOT;
	record(1, bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &ethertype, 2, 0));
	record(2, skb->protocol);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
