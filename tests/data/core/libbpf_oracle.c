/* The libbpf oracle for tests/btf/test_core_libbpf.py: open an object with a custom target
 * BTF (btf_custom_path), load it and print libbpf's debug log, which records every CO-RE
 * relocation it applies ("relo #N: patched insn #K (ALU/ALU64) imm A -> B", "substituting
 * insn #K w/ invalid insn", or why it failed). Loading the programs may then fail in the
 * verifier; only the relocation log matters. Built by the test with gcc and libbpf-dev. */
#include <stdarg.h>
#include <stdio.h>
#include <bpf/libbpf.h>

static int print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	return vfprintf(stdout, fmt, ap);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s OBJECT TARGET_BTF\n", argv[0]);
		return 2;
	}
	libbpf_set_print(print);
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = argv[2]);
	struct bpf_object *obj = bpf_object__open_file(argv[1], &opts);
	if (!obj)
		return 2;
	printf("RESULT %d\n", bpf_object__load(obj));
	bpf_object__close(obj);
	return 0;
}
