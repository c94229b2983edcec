/* The lab guest's workload: a CPU-bound loop that counts iterations and
 * prints, once a second, to stdout (the serial console ttyS0):
 *
 *     TICK n total=ITERATIONS rate=ITERATIONS_PER_SECOND
 *
 * n is the tick number (1, 2, ...), total the monotonically increasing
 * progress counter. Built at lab time with `gcc -static -O2`. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void) {
    volatile uint64_t x = 1;
    uint64_t total = 0, last_total = 0;
    unsigned long n = 0;
    double last = now();
    printf("TICKER start\n");
    fflush(stdout);
    for (;;) {
        for (int i = 0; i < 20000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        total += 20000;
        double t = now();
        if (t - last >= 1.0) {
            n++;
            printf("TICK %lu total=%llu rate=%llu\n", n, (unsigned long long)total,
                   (unsigned long long)((double)(total - last_total) / (t - last)));
            fflush(stdout);
            last = t;
            last_total = total;
        }
    }
    return 0;
}
