// cpus: v1 v4
// Legacy packet access (BPF_ABS / BPF_IND) through LLVM's bpf.load intrinsics.
#include "bpf_mini.h"

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

SEC("socket") int filter(void *skb)
{
	__u64 proto = load_half(skb, 12);
	__u64 ihl = load_byte(skb, 14) & 0xf;
	if (proto != 0x0800)
		return 0;
	return load_word(skb, 26) == load_word(skb, 14 + ihl * 4) ? -1 : 0;
}
