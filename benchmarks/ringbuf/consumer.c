// Peer for `python -m ebpf.bench.ringbuf`: drain a ring buffer backlog with libbpf's ring_buffer API.
// Usage: consumer FD EXPECTED  -- FD is an inherited ringbuf map fd already holding EXPECTED records.
// Prints: "<records> <nanoseconds>" for the drain (ring_buffer__consume until EXPECTED are seen).
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long seen;
static unsigned long long checksum;

static int on_record(void *ctx, void *data, size_t size) {
    (void)ctx;
    (void)size;
    checksum += *(unsigned long long *)data;  // touch the record as the Python callback does
    seen++;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FD EXPECTED\n", argv[0]);
        return 2;
    }
    int fd = atoi(argv[1]);
    long long expected = atoll(argv[2]);
    struct ring_buffer *rb = ring_buffer__new(fd, on_record, NULL, NULL);
    if (!rb) {
        perror("ring_buffer__new");
        return 1;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    while (seen < expected) {
        if (ring_buffer__consume(rb) < 0) break;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    printf("%lld %lld %llu\n", seen, ns, checksum);
    ring_buffer__free(rb);
    return 0;
}
