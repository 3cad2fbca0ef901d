#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

struct fwd_only;

union fwd_union;

typedef unsigned int u32;

union both {
	u32 word;
	unsigned char bytes[4];
};

enum color {
	RED = 0,
	GREEN = 5,
	BLUE = -1,
};

enum big {
	HUGE = 1099511627775ULL,
};

struct bits;

struct holder {
	struct fwd_only *fwd;
	union fwd_union *fwdu;
	const struct bits *cbits;
	int * restrict r;
	int __attribute__((btf_type_tag("user"))) *tagged;
	union both u;
	enum color color;
	enum big big;
	double d;
	int tagged_member;
};

struct bits {
	unsigned int a: 3;
	unsigned int b: 5;
	int c;
	volatile char v;
};

typedef long long s64;

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
