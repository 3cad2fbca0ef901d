/* CO-RE relocations of every kind against self-contained types (no vmlinux.h). The tests
 * relocate this object against target BTFs they build with btf.Spec.build. Each program is
 * one section so that instruction slots are section slots. */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u32 __be32;
typedef __u16 __be16;
typedef __u32 __wsum;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

enum color { RED = 1, GREEN = 2, BLUE = 4 };
enum big { SMALL = 1, HUGE = 0x100000000ULL };

struct inner {
	int a;
	short b;
};

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
struct obj {
	int x;
	long y;
	unsigned int flags : 3;
	int sbits : 5;
	struct inner in;
	union {
		int u1;
		long u2;
	};
	int arr[4];
	char name[16];
	struct inner *ptr;
	unsigned short half;
};

struct obj___v2 {
	int gone;
	long y;
};

struct missing_type {
	int z;
};
#pragma clang attribute pop

typedef struct obj obj_t;

SEC("socket/offsets")
int offsets(struct obj *o)
{
	/* direct loads: the LDX offset itself is relocated */
	return o->x + o->y + o->in.b + o->arr[2] + o->u2 + o->half;
}

SEC("socket/store")
int store(struct obj *o)
{
	o->x = 7;        /* ST imm */
	o->y = (long)o;  /* STX */
	return 0;
}

SEC("socket/field_info")
int field_info(struct obj *o)
{
	int r = 0;
	r += bpf_core_field_offset(o->in.b);
	r += bpf_core_field_size(o->name);
	r += bpf_core_field_exists(o->u1);
	r += bpf_core_field_exists(struct obj___v2, gone);
	r += __builtin_preserve_field_info(o->sbits, BPF_FIELD_SIGNED) ? 100 : 0;
	r += bpf_core_field_size(o->half);
	return r;
}

SEC("socket/bitfields")
int bitfields(struct obj *o)
{
	return BPF_CORE_READ_BITFIELD_PROBED(o, flags) + BPF_CORE_READ_BITFIELD_PROBED(o, sbits);
}

SEC("socket/types")
int types(void *ctx)
{
	int r = 0;
	r += bpf_core_type_id_local(struct obj);
	r += bpf_core_type_id_kernel(obj_t);
	r += bpf_core_type_exists(struct missing_type);
	r += bpf_core_type_size(struct inner);
	r += bpf_core_type_matches(struct inner);
	return r;
}

SEC("socket/enums")
int enums(void *ctx)
{
	long r = 0;
	r += bpf_core_enum_value_exists(enum color, GREEN);
	r += bpf_core_enum_value(enum color, BLUE);
	r += bpf_core_enum_value(enum big, HUGE);
	return r;
}

SEC("socket/flavor")
int flavor(struct obj *o)
{
	struct obj___v2 *v = (void *)o;
	if (bpf_core_field_exists(v->gone))
		return v->gone;
	return BPF_CORE_READ(v, y);
}

/* a subprogram in .text: its relocations are keyed by ".text" in .BTF.ext and the ELF
 * loader rebases them into each program that calls it */
static __attribute__((noinline)) int sub_read(struct obj *o)
{
	return o->x + bpf_core_field_size(o->name);
}

SEC("socket/subprog")
int subprog(struct obj *o)
{
	return sub_read(o) + o->half;
}

char LICENSE[] SEC("license") = "GPL";
