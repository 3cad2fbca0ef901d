/* Shared definitions for the ELF test corpus (no kernel headers: reproducible builds). */
#ifndef ELF_CORPUS_COMMON_H
#define ELF_CORPUS_COMMON_H
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#endif
