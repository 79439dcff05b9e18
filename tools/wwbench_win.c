/*
 * wwbench_win: write-watch costs as a Windows program sees them, for
 * comparing Wine builds (tools/bench runs it under stock Wine 8.0 and under
 * the private Wine with the module, alternately).
 *
 *   wwbench_win frames HEAP_MIB WRITTEN_PER_100K FRAMES
 *       a garbage collector's frame: the mutator writes a random fraction of
 *       a watched (populated) heap, the collector calls GetWriteWatch with
 *       reset and reads every reported page; prints the median milliseconds
 *       per frame, and the collector's part of it
 *   wwbench_win sparse [warm]
 *       writes every other page of 1 GiB and collects them; prints the time
 *       of the first collection, or with warm of a second one
 *   wwbench_win protect | commit | alloc
 *       what programs that never watch memory pay: VirtualProtect of an
 *       unwatched page, commit and decommit of one, VirtualAlloc and
 *       VirtualFree of 64 KiB; prints the median microseconds per pair
 *   wwbench_win reserve [tables]
 *       reserves and releases 256 GiB with MEM_WRITE_WATCH; prints the
 *       milliseconds, or with tables the KiB of page tables the
 *       reservation took before anything was committed
 *   wwbench_win first
 *       the first MEM_WRITE_WATCH allocation of the process, where the
 *       module starts its backend, and a second one; prints the
 *       microseconds of each
 *   wwbench_win start
 *       does nothing: tools/bench times whole processes of it, Wine's
 *       start-up and the module's part in it
 *   wwbench_win latency
 *       one GetWriteWatch with reset over 64 MiB holding one written page;
 *       prints the median microseconds per call
 */

#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "median.h"
#include "../tests/page_tables.h"

#define STATUS_PATH "Z:\\proc\\self\\status"

#define PAGE 4096

static double now_ms(void)
{
    static LARGE_INTEGER frequency;
    LARGE_INTEGER counter;

    if (!frequency.QuadPart) QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&counter);
    return (double)counter.QuadPart * 1000.0 / frequency.QuadPart;
}

static char *watched_heap(SIZE_T size)
{
    char *heap = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE);

    if (!heap)
    {
        printf("VirtualAlloc failed: %lu\n", GetLastError());
        exit(1);
    }
    return heap;
}

/* Collects every written page with reset; returns how many. */
static SIZE_T collect(char *heap, SIZE_T size, void **found, ULONG_PTR room, int touch)
{
    ULONG_PTR count = room, i;
    ULONG granularity;
    volatile char sum = 0;

    if (GetWriteWatch(WRITE_WATCH_FLAG_RESET, heap, size, found, &count, &granularity))
    {
        printf("GetWriteWatch failed: %lu\n", GetLastError());
        exit(1);
    }
    for (i = 0; touch && i < count; i++) sum += *(char *)found[i];
    return count;
}

static int bench_frames(int heap_mib, int per_100k, int frames)
{
    SIZE_T size = (SIZE_T)heap_mib << 20, pages = size / PAGE, i;
    char *heap = watched_heap(size);
    void **found = malloc(pages * sizeof(*found));
    double *times = malloc(frames * sizeof(*times)), *collector = malloc(frames * sizeof(*collector)), start, mid;
    unsigned int seed = 12345, frame;

    /* a collector's heap is in use: populate it, then start clean */
    for (i = 0; i < pages; i++) heap[i * PAGE] = 1;
    collect(heap, size, found, pages, 0);
    for (frame = 0; frame < (unsigned int)frames; frame++)
    {
        start = now_ms();
        for (i = 0; i < pages; i++)
        {
            seed = seed * 1103515245 + 12345;
            if ((seed >> 8) % 100000 < (unsigned int)per_100k) heap[i * PAGE + (seed & 1023)]++;
        }
        mid = now_ms();
        collect(heap, size, found, pages, 1);
        times[frame] = now_ms() - start;
        collector[frame] = now_ms() - mid;
    }
    printf("frames %d MiB %.3f%% written: %.3f ms/frame (collector %.3f ms)\n", heap_mib, per_100k / 1000.0,
           median(times, frames), median(collector, frames));
    return 0;
}

static int bench_sparse(int warm)
{
    SIZE_T size = (SIZE_T)1 << 30, pages = size / PAGE, i, total = 0;
    char *heap = watched_heap(size);
    void **found = malloc(pages * sizeof(*found));
    double start = now_ms();

    for (i = 0; i < pages; i += 2) heap[i * PAGE] = 1;
    if (warm)
    {
        collect(heap, size, found, pages, 0);
        for (i = 0; i < pages; i += 2) heap[i * PAGE] = 1;
        start = now_ms();
    }
    total = collect(heap, size, found, pages, 0);
    printf("sparse 1 GiB every other page%s: %.1f ms (%lu pages)\n", warm ? ", warm" : "", now_ms() - start,
           (unsigned long)total);
    return total != pages / 2;
}

enum unwatched_op { PROTECT, COMMIT, ALLOC };

/* One pair of calls on unwatched memory, as programs that never watch
 * memory make them all the time. */
static void unwatched_pair(enum unwatched_op op, char *area)
{
    DWORD old;
    void *block;

    switch (op)
    {
    case PROTECT:
        VirtualProtect(area, PAGE, PAGE_READONLY, &old);
        VirtualProtect(area, PAGE, PAGE_READWRITE, &old);
        break;
    case COMMIT:
        VirtualAlloc(area, PAGE, MEM_COMMIT, PAGE_READWRITE);
        VirtualFree(area, PAGE, MEM_DECOMMIT);
        break;
    case ALLOC:
        block = VirtualAlloc(NULL, 16 * PAGE, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
        VirtualFree(block, 0, MEM_RELEASE);
        break;
    }
}

static int bench_unwatched(enum unwatched_op op)
{
    static const char * const names[] = { "VirtualProtect twice", "commit and decommit", "VirtualAlloc and VirtualFree" };
    /* a watched allocation exists, as in a program that watches some */
    char *area = VirtualAlloc(NULL, 16 * PAGE, op == COMMIT ? MEM_RESERVE : MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    double times[201], start;
    int i, j;

    watched_heap(64 << 10);
    for (i = 0; i < 201; i++)
    {
        start = now_ms();
        for (j = 0; j < 100; j++) unwatched_pair(op, area);
        times[i] = (now_ms() - start) * 10.0;
    }
    printf("unwatched memory, %s: %.3f us/pair\n", names[op], median(times, 201));
    return 0;
}

static int bench_reserve(int tables)
{
    SIZE_T size = (SIZE_T)256 << 30;
    double start = now_ms(), reserved;
    long before = page_table_kib(STATUS_PATH), grown;
    char *base = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_WRITE_WATCH, PAGE_READWRITE);

    if (!base)
    {
        printf("VirtualAlloc of 256 GiB failed: %lu\n", GetLastError());
        return 1;
    }
    reserved = now_ms() - start;
    grown = page_table_kib(STATUS_PATH) - before;
    VirtualFree(base, 0, MEM_RELEASE);
    if (!tables)
        printf("reserve and release 256 GiB with MEM_WRITE_WATCH: %.2f ms (reserve %.2f ms)\n", now_ms() - start,
               reserved);
    else if (before < 0) printf("page tables: not to be had\n");
    else printf("page tables of a 256 GiB reservation: %ld KiB\n", grown);
    return 0;
}

static double watched_allocation_us(void)
{
    double start = now_ms();
    void *heap = VirtualAlloc(NULL, 64 << 10, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE);
    double took = (now_ms() - start) * 1000.0;

    if (!heap)
    {
        printf("VirtualAlloc failed: %lu\n", GetLastError());
        exit(1);
    }
    return took;
}

static int bench_first(void)
{
    double first = watched_allocation_us(), second = watched_allocation_us();

    printf("first MEM_WRITE_WATCH allocation: %.1f us (a second one %.1f us)\n", first, second);
    return 0;
}

static int bench_latency(void)
{
    SIZE_T size = 64 << 20;
    char *heap = watched_heap(size);
    void *found[16];
    double times[2001], start;
    int i;

    for (i = 0; i < 2001; i++)
    {
        heap[(i % 16384) * PAGE]++;
        start = now_ms();
        collect(heap, size, found, 16, 0);
        times[i] = (now_ms() - start) * 1000.0;
    }
    printf("latency GetWriteWatch+reset 64 MiB 1 page written: %.2f us/call\n", median(times, 2001));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "frames")) return bench_frames(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc >= 2 && !strcmp(argv[1], "sparse")) return bench_sparse(argc == 3 && !strcmp(argv[2], "warm"));
    if (argc == 2 && !strcmp(argv[1], "protect")) return bench_unwatched(PROTECT);
    if (argc == 2 && !strcmp(argv[1], "commit")) return bench_unwatched(COMMIT);
    if (argc == 2 && !strcmp(argv[1], "alloc")) return bench_unwatched(ALLOC);
    if (argc >= 2 && !strcmp(argv[1], "reserve")) return bench_reserve(argc == 3 && !strcmp(argv[2], "tables"));
    if (argc == 2 && !strcmp(argv[1], "first")) return bench_first();
    if (argc == 2 && !strcmp(argv[1], "start")) return 0;
    if (argc == 2 && !strcmp(argv[1], "latency")) return bench_latency();
    printf("usage: wwbench_win frames HEAP_MIB WRITTEN_PER_100K FRAMES | sparse [warm] | latency | protect | "
           "commit | alloc | reserve [tables] | first | start\n");
    return 2;
}
