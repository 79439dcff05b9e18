/*
 * wwbench: what write watches cost through the module, per backend, on the
 * native test host.  Runs itself once per backend and prints medians side
 * by side with the ratio fallback / kernel.
 *
 *   tools/wwbench [RUNS]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "host.h"

#define MAX_RUNS 50

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *values, int count)
{
    qsort(values, count, sizeof(*values), compare_doubles);
    return values[count / 2];
}

static void reset_all(char *base, size_t size)
{
    if (writewatch_reset_write_watch(base, size)) abort();
}

/* Writes one byte on every stride-th page. */
static void write_pages(char *base, size_t pages, size_t stride)
{
    size_t i;

    for (i = 0; i < pages; i += stride) base[i * page]++;
}

/* Microseconds per first write to a clean page, populated or not. */
static void bench_first_write(int runs)
{
    size_t pages = 16384;
    double fresh[MAX_RUNS], again[MAX_RUNS], start;
    writewatch_status status;
    int run;

    for (run = 0; run < runs; run++)
    {
        char *base = host_alloc(pages * page, PROT_READ | PROT_WRITE, &status);

        start = now();
        write_pages(base, pages, 1);
        fresh[run] = (now() - start) / pages * 1e6;
        reset_all(base, pages * page);
        start = now();
        write_pages(base, pages, 1);
        again[run] = (now() - start) / pages * 1e6;
        host_free(base, pages * page);
    }
    printf("first write, unpopulated page (us/page) %.3f\n", median(fresh, runs));
    printf("first write after reset (us/page) %.3f\n", median(again, runs));
}

/* Milliseconds per call over 1 GiB with 1% of the pages written. */
static void bench_large_range(int runs)
{
    static void *addresses[4096];
    size_t size = (size_t)1 << 30, pages = size / page, stride = 100;
    double get[MAX_RUNS], get_reset[MAX_RUNS], reset[MAX_RUNS], start;
    writewatch_status status;
    char *base = host_alloc(size, PROT_READ | PROT_WRITE, &status);
    uintptr_t count;
    int run;

    if (!base)
    {
        printf("1 GiB allocation failed: %#x\n", (unsigned int)status);
        return;
    }
    for (run = 0; run < runs; run++)
    {
        write_pages(base, pages, stride);
        count = 4096;
        start = now();
        get_watch(0, base, size, addresses, &count);
        get[run] = (now() - start) * 1e3;
        if (count != (pages + stride - 1) / stride) abort();

        start = now();
        get_watch(WRITEWATCH_FLAG_RESET, base, size, addresses, &count);
        get_reset[run] = (now() - start) * 1e3;

        write_pages(base, pages, stride);
        start = now();
        reset_all(base, size);
        reset[run] = (now() - start) * 1e3;
    }
    printf("GetWriteWatch 1 GiB 1%% written (ms/call) %.3f\n", median(get, runs));
    printf("GetWriteWatch+reset 1 GiB 1%% written (ms/call) %.3f\n", median(get_reset, runs));
    printf("ResetWriteWatch 1 GiB 1%% written (ms/call) %.3f\n", median(reset, runs));
    host_free(base, size);
}

static int child(int runs)
{
    host_init();
    bench_first_write(runs);
    bench_large_range(runs);
    return 0;
}

/* Runs one backend in a child process; stores its figures in values. */
static int run_backend(const char *self, const char *backend, int runs, char names[][80], double *values)
{
    char command[512], line[256];
    FILE *pipe;
    int count = 0;

    snprintf(command, sizeof(command), "WRITEWATCH_BACKEND=%s WWBENCH_CHILD=1 %s %d", backend, self, runs);
    if (!(pipe = popen(command, "r"))) return 0;
    while (count < 16 && fgets(line, sizeof(line), pipe))
    {
        char *value = strrchr(line, ' ');

        if (!value) continue;
        *value = 0;
        snprintf(names[count], sizeof(names[count]), "%.79s", line);
        values[count++] = atof(value + 1);
    }
    pclose(pipe);
    return count;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5, count, i;
    char names[16][80], other[16][80];
    double uffd[16], fallback[16];

    if (runs < 1 || runs > MAX_RUNS) runs = 5;
    if (getenv("WWBENCH_CHILD")) return child(runs);

    count = run_backend(argv[0], "uffd", runs, names, uffd);
    if (run_backend(argv[0], "mprotect", runs, other, fallback) != count || !count)
    {
        fprintf(stderr, "wwbench: a backend did not run\n");
        return 1;
    }
    printf("median of %d runs, native host\n", runs);
    printf("%-50s %10s %10s %8s\n", "figure", "uffd", "mprotect", "ratio");
    for (i = 0; i < count; i++)
        printf("%-50s %10.3f %10.3f %7.2fx\n", names[i], uffd[i], fallback[i], fallback[i] / uffd[i]);
    return 0;
}
