// Test objects for `ebpf disasm` / `ebpf run`: two program sections, a subprogram in
// .text (a call relocation), a global (an lddw relocation) and a 64-bit constant.
// Rebuild with ./build.sh (clang >= 15); the .o files and llvm-objdump listings are checked in.
#define SEC(name) __attribute__((section(name), used))

struct xdp_md {
	unsigned int data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex;
};

unsigned long long counter;

static __attribute__((noinline)) int mul3(int a)
{
	return a * 3 + 1;
}

SEC("xdp")
int xdp_prog(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	unsigned long long x = 0x1122334455667788ULL;

	if (data + 14 > end)
		return 1;
	return ((unsigned char *)data)[12] == 8 ? 2 : (int)(x >> (ctx->ingress_ifindex & 63));
}

SEC("socket")
int sock(struct xdp_md *ctx)
{
	counter++;
	return mul3(ctx->data);
}

char _license[] SEC("license") = "GPL";
