/* A small program for the uprobe and USDT tests: calls target_add() N times and fires the
 * ebpftest:tick USDT probe (guarded by its semaphore) once per call; an optional second
 * argument waits that many milliseconds first. */
#define _SDT_HAS_SEMAPHORES 1
#include <stdlib.h>
#include <sys/sdt.h>
#include <unistd.h>

unsigned short ebpftest_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));

__attribute__((noinline)) long target_add(long a, long b) {
    __asm__ volatile("" ::: "memory");
    return a + b;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3;
    long total = 0;
    if (argc > 2)
        usleep(atoi(argv[2]) * 1000); /* time for a test to look at this process */
    for (int i = 0; i < n; i++) {
        total = target_add(total, i + 40);
        if (ebpftest_tick_semaphore)
            STAP_PROBE2(ebpftest, tick, i + 1000, total);
    }
    return total == 0;
}
