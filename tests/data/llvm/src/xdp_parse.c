// cpus: v2 v3
// Packet parsing with bounds checks: loads of every width, stack stores of immediates.
#include "bpf_mini.h"

struct ethhdr {
	__u8 dst[6];
	__u8 src[6];
	__u16 proto;
};

struct iphdr {
	__u8 ihl_version;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct scratch {
	__u64 a;
	__u32 b;
	__u16 c;
	__u8 d;
	__u8 pad;
};

static __noinline void fill(struct scratch *s, __u32 v)
{
	s->a = 0x1122334455667788ULL;
	s->b = v;
	s->c = 0x7777;
	s->d = 5;
}

SEC("xdp") int parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	volatile struct scratch s = {};

	if ((void *)(ip + 1) > end)
		return XDP_DROP;
	if (eth->proto != __builtin_bswap16(0x0800))
		return XDP_PASS;
	s.a = 1;
	s.b = 2;
	s.c = 3;
	s.d = 4;
	fill((struct scratch *)&s, ip->saddr);
	if (ip->ttl < 2 || ip->tot_len == 0)
		return XDP_DROP;
	return ip->protocol == 17 && s.b != ip->daddr ? XDP_TX : XDP_PASS;
}
