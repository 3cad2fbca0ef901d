/* CO-RE over the harder shapes: flexible arrays, nested anonymous members, multi-dimensional
 * arrays, a non-zero first index, typedef'd roots, function pointers, signed enums and wide
 * bitfields. The tests relocate it against mutated copies of its own BTF and compare with
 * libbpf. */
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

typedef int (*handler_t)(int, long);
typedef enum mode { M_A, M_B = -3, M_C = 7 } mode_t;

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
struct item {
	int id;
	char tag[3];
};

struct flex {
	int n;
	struct item items[];
};

struct deep {
	union {
		struct {
			int p;
			int q;
		};
		long r;
	};
	struct item arr2[2][3];
	mode_t m;
	handler_t h;
	unsigned long long big : 40;
	unsigned char tiny : 2;
	const volatile int cv;
};
#pragma clang attribute pop

typedef struct deep deep_t;

SEC("socket/nested")
int nested(struct deep *d)
{
	long r = 0;
	r += bpf_core_field_offset(d->q);
	r += bpf_core_field_offset(d->arr2[1][2].tag);
	r += bpf_core_field_size(d->arr2[1]);
	r += bpf_core_field_exists(d->arr2[1][2]);
	r += (long)__builtin_preserve_access_index(&d[1].r);
	r += bpf_core_field_offset(d->cv);
	r += bpf_core_field_size(d->h);
	return r;
}

SEC("socket/flex")
int flexible(struct flex *f)
{
	return bpf_core_field_offset(f->items[5].tag[1]) + bpf_core_field_size(f->items[5]) + f->n;
}

SEC("socket/shape_types")
int shape_types(void *ctx)
{
	long r = 0;
	r += bpf_core_type_exists(handler_t);
	r += bpf_core_type_matches(handler_t);
	r += bpf_core_type_size(mode_t);
	r += bpf_core_type_matches(deep_t);
	r += bpf_core_type_exists(struct flex);
	r += bpf_core_type_id_kernel(deep_t);
	r += bpf_core_enum_value(mode_t, M_B);
	r += bpf_core_enum_value_exists(enum mode, M_C);
	return r;
}

SEC("socket/shape_bits")
int shape_bits(struct deep *d)
{
	long r = 0;
	r += __builtin_preserve_field_info(d->big, BPF_FIELD_BYTE_OFFSET);
	r += __builtin_preserve_field_info(d->big, BPF_FIELD_BYTE_SIZE);
	r += __builtin_preserve_field_info(d->big, BPF_FIELD_LSHIFT_U64);
	r += __builtin_preserve_field_info(d->big, BPF_FIELD_RSHIFT_U64);
	r += __builtin_preserve_field_info(d->tiny, BPF_FIELD_LSHIFT_U64);
	r += __builtin_preserve_field_info(d->tiny, BPF_FIELD_BYTE_OFFSET);
	r += __builtin_preserve_field_info(d->m, BPF_FIELD_SIGNED);
	r += __builtin_preserve_field_info(d->tiny, BPF_FIELD_SIGNED);
	return r + d->cv;
}

char LICENSE[] SEC("license") = "GPL";
