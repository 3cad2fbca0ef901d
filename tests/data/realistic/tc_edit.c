// SPDX-License-Identifier: GPL-2.0
/* tc programs that reshape packets: VLAN tagging, room for an encapsulation header,
 * tail changes, pulling non-linear data and hash handling.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define ETH_HLEN 14
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define BPF_ADJ_ROOM_NET 0
#define BPF_ADJ_ROOM_MAC 1
#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 (1ULL << 1)

const volatile __u16 vlan_id = 100;
const volatile __s32 room = 8;
const volatile __u32 new_len = 64;

__s64 results[8] = {};

SEC("tc")
int vlan_tag(struct __sk_buff *skb)
{
	if (skb->vlan_present) {
		results[0] = bpf_skb_vlan_pop(skb);
		return TC_ACT_OK;
	}
	results[1] = bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vlan_id);
	results[2] = skb->len;
	results[3] = skb->vlan_tci | (__u64)skb->vlan_present << 32 | (__u64)skb->vlan_proto << 40;
	return TC_ACT_OK;
}

SEC("tc")
int make_room(struct __sk_buff *skb)
{
	void *data, *data_end;
	long err;

	err = bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_NET, 0);
	results[4] = err;
	if (err)
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN + 8 > data_end)
		return TC_ACT_SHOT;
	__builtin_memset(data + ETH_HLEN, 0xee, 8);
	return TC_ACT_OK;
}

SEC("tc")
int resize(struct __sk_buff *skb)
{
	__u8 *p, *end;

	results[5] = bpf_skb_change_tail(skb, new_len, 0);
	results[6] = bpf_skb_pull_data(skb, 0);
	p = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	if (p + 1 > end)
		return TC_ACT_SHOT;
	if (p + 20 <= end)
		p[19] = (__u8)skb->len;
	return skb->len;
}

SEC("tc")
int hashes(struct __sk_buff *skb)
{
	__u32 before = skb->hash;

	bpf_set_hash(skb, 0x12345678);
	results[7] = (__u64)before << 32 | skb->hash;
	bpf_set_hash_invalid(skb);
	return skb->hash == 0 ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
