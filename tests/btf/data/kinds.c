/* Every BTF kind that clang emits, for tests/btf. Rebuild with ./build.sh. */
typedef unsigned int u32;
typedef long long s64;

struct fwd_only;                              /* FWD (struct) */
union fwd_union;                              /* FWD (union) */

enum color { RED, GREEN = 5, BLUE = -1 };     /* ENUM, signed */
enum big { HUGE = 0xffffffffffULL };          /* ENUM64 */

struct bits {                                 /* STRUCT with bitfields: kind_flag */
	unsigned int a : 3;
	unsigned int b : 5;
	int c;
	volatile char v;                          /* VOLATILE */
};

union both {                                  /* UNION */
	u32 word;                                 /* TYPEDEF */
	unsigned char bytes[4];                   /* ARRAY */
};

struct holder {
	struct fwd_only *fwd;                     /* PTR to FWD */
	union fwd_union *fwdu;
	const struct bits *cbits;                 /* CONST */
	int *restrict r;                          /* RESTRICT */
	int __attribute__((btf_type_tag("user"))) *tagged;  /* TYPE_TAG */
	union both u;
	enum color color;
	enum big big;
	double d;                                 /* FLOAT */
	int tagged_member __attribute__((btf_decl_tag("member_tag")));  /* DECL_TAG, idx 0.. */
};

struct holder global_holder;                  /* VAR in DATASEC .bss */
struct bits global_bits;                      /* STRUCT with kind_flag, VOLATILE */
int counter = 7;                              /* VAR in DATASEC .data */
const s64 limit = 100;                        /* .rodata */

static __attribute__((noinline)) int helper(int x, struct holder *h)   /* FUNC static, FUNC_PROTO */
{
	return x + h->tagged_member;
}

__attribute__((section("xdp"), btf_decl_tag("entry")))
int prog(void *ctx)                           /* FUNC global with a DECL_TAG (component -1) */
{
	counter++;
	return helper(counter, &global_holder) + (int)limit;
}

char _license[] __attribute__((section("license"))) = "GPL";
