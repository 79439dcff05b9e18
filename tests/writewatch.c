/*
 * The Windows write-watch semantics, as a native host can show them.
 * Numbers in comments refer to tests/semantics.md.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "writewatch_private.h"
#include "host.h"
#include "test.h"
#include "page_tables.h"

#define STATUS_PATH "/proc/self/status"

#define SENTINEL ((void *)0x5a5a5a5a)
/* room for answers of several batches */
#define MAX_PAGES (4 * RUN_BATCH)

static void *results[MAX_PAGES];

static char *alloc_rw(size_t pages)
{
    writewatch_status status;
    char *base = host_alloc(pages * page, PROT_READ | PROT_WRITE, &status);

    ok(base != NULL, "allocation of %zu pages failed with %#x\n", pages, (unsigned int)status);
    if (!base) abort();
    return base;
}

static void fill_results(void)
{
    size_t i;

    for (i = 0; i < MAX_PAGES; i++) results[i] = SENTINEL;
}

/* Queries [base, base + pages) and checks that exactly the listed page
 * indices are returned, in order, and no entry past them is written. */
#define expect_pages(flags, base, pages, room, ...) \
    expect_pages_(__LINE__, flags, base, pages, room, (const int[]){ __VA_ARGS__, -1 })

static void expect_pages_(int line, int flags, char *base, size_t pages, uintptr_t room, const int *expected)
{
    writewatch_status status;
    uintptr_t count = room, n = 0, i;
    uint32_t granularity = 0;

    while (expected[n] >= 0) n++;
    fill_results();
    status = writewatch_get_write_watch(flags, base, pages * page, results, &count, &granularity);
    ok_(__FILE__, line, status == 0, "status %#x\n", (unsigned int)status);
    ok_(__FILE__, line, granularity == page, "granularity %u\n", granularity);
    ok_(__FILE__, line, count == n, "count %lu, expected %lu\n", (unsigned long)count, (unsigned long)n);
    for (i = 0; i < count && i < n; i++)
        ok_(__FILE__, line, results[i] == base + expected[i] * page, "entry %lu is page %ld, expected %d\n",
            (unsigned long)i, (long)(((char *)results[i] - base) / (long)page), expected[i]);
    if (count < room)
        ok_(__FILE__, line, results[count] == SENTINEL, "entry %lu past the count was written\n",
            (unsigned long)count);
}
#define NONE -1

struct query
{
    char *base;
    size_t pages;
    int done;
};

static void *query_thread(void *arg)
{
    struct query *query = arg;
    void *array[64];
    uintptr_t count = 64;

    get_watch(0, query->base, query->pages * page, array, &count);
    __atomic_store_n(&query->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Whether another thread's query completes within 10 s: it would wait
 * forever for a lock left taken. */
static int other_thread_can_query(char *base, size_t pages)
{
    static struct query query;
    pthread_t thread;
    int i;

    query.base = base;
    query.pages = pages;
    query.done = 0;
    pthread_create(&thread, NULL, query_thread, &query);
    for (i = 0; i < 10000 && !__atomic_load_n(&query.done, __ATOMIC_ACQUIRE); i++) usleep(1000);
    if (!query.done) return 0;
    pthread_join(thread, NULL);
    return 1;
}

static void test_fresh_allocation_reports_nothing(void)
{
    char *base = alloc_rw(16);

    expect_pages(0, base, 16, 64, NONE);
    host_free(base, 16 * page);
}

static void test_write_marks_page_in_ascending_order(void)
{
    char *base = alloc_rw(16);

    base[9 * page] = 1;
    base[2 * page + 100] = 1;
    base[15 * page + page - 1] = 1;
    expect_pages(0, base, 16, 64, 2, 9, 15);
    host_free(base, 16 * page);
}

static void test_store_straddling_pages_marks_both(void)
{
    char *base = alloc_rw(16);

    memcpy(base + 4 * page - 3, "abcdefgh", 8);
    expect_pages(0, base, 16, 64, 3, 4);
    host_free(base, 16 * page);
}

static void test_repeated_writes_give_one_entry(void)
{
    char *base = alloc_rw(16);
    int i;

    for (i = 0; i < 100; i++) base[5 * page + i] = i;
    expect_pages(0, base, 16, 64, 5);
    host_free(base, 16 * page);
}

static void test_reads_do_not_mark(void)
{
    volatile char *base = alloc_rw(16);
    char sum = 0;
    int i;

    for (i = 0; i < 16; i++) sum += base[i * page];
    ok(sum == 0, "fresh memory is not zero\n");
    expect_pages(0, (char *)base, 16, 64, NONE);
    host_free((char *)base, 16 * page);
}

static void write_first_byte(void *addr)
{
    *(volatile char *)addr = 1;
}

/* 11: a faulting write stores nothing and marks nothing */
static void test_faulting_write_does_not_mark(void)
{
    char *base = alloc_rw(16);

    host_protect(base + 3 * page, page, PROT_READ);
    ok(host_faults(write_first_byte, base + 3 * page), "write to a read-only page did not fault\n");
    ok(base[3 * page] == 0, "the faulting write stored something\n");
    expect_pages(0, base, 16, 64, NONE);
    host_protect(base + 3 * page, page, PROT_READ | PROT_WRITE);
    ok(!host_faults(write_first_byte, base + 3 * page), "write to a read-write page faulted\n");
    expect_pages(0, base, 16, 64, 3);
    host_free(base, 16 * page);
}

/* 5: Wine 8.0's order: count/granularity NULL, *count or size 0, flags,
 * addresses NULL, then the range */
static void test_parameter_checks_in_wine_order(void)
{
    char *base = alloc_rw(16);
    uintptr_t count, zero = 0;
    uint32_t granularity;

    base[0] = 1;
    ok(writewatch_get_write_watch(0, base, page, results, NULL, &granularity) == WRITEWATCH_STATUS_ACCESS_VIOLATION,
       "NULL count\n");
    count = 1;
    ok(writewatch_get_write_watch(0, base, page, results, &count, NULL) == WRITEWATCH_STATUS_ACCESS_VIOLATION,
       "NULL granularity\n");
    ok(writewatch_get_write_watch(2, base, page, NULL, NULL, NULL) == WRITEWATCH_STATUS_ACCESS_VIOLATION,
       "NULL count wins over bad flags and NULL addresses\n");
    ok(writewatch_get_write_watch(0, base, page, NULL, &zero, &granularity) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "zero count with NULL addresses\n");
    count = 1;
    ok(writewatch_get_write_watch(0, base, 0, results, &count, &granularity) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "zero size\n");
    count = 1;
    ok(writewatch_get_write_watch(0, base + 1, 0, results, &count, &granularity) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "zero size at an unaligned base\n");
    count = 1;
    ok(writewatch_get_write_watch(2, base, page, NULL, &count, &granularity) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "bad flags win over NULL addresses\n");
    count = 1;
    ok(writewatch_get_write_watch(~1u, base, page, results, &count, &granularity) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "bad flags\n");
    count = 1;
    ok(writewatch_get_write_watch(0, base, page, NULL, &count, &granularity) == WRITEWATCH_STATUS_ACCESS_VIOLATION,
       "NULL addresses\n");
    count = 1;
    ok(writewatch_get_write_watch(0, base, 32 * page, NULL, &count, &granularity) == WRITEWATCH_STATUS_ACCESS_VIOLATION,
       "NULL addresses wins over a bad range\n");
    expect_pages(0, base, 16, 64, 0);
    host_free(base, 16 * page);
}

/* 8: a failed call writes nothing and changes nothing */
static void test_failed_call_writes_nothing(void)
{
    char *base = alloc_rw(16);
    uint32_t granularity = 77;
    uintptr_t count = 5;

    base[page] = 1;
    fill_results();
    ok(writewatch_get_write_watch(1, base, 17 * page, results, &count, &granularity) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "range past the end\n");
    ok(count == 5 && granularity == 77 && results[0] == SENTINEL, "a failed call wrote its outputs\n");
    expect_pages(0, base, 16, 64, 1);
    host_free(base, 16 * page);
}

/* 7: the range must lie inside one write-watched allocation */
static void test_range_must_be_inside_one_watched_allocation(void)
{
    char *area = mmap(NULL, 32 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char stack_buffer[16], *heap = malloc(page);
    uintptr_t count = 16;

    /* two watched allocations side by side, as VirtualAlloc may place them */
    ok(writewatch_add_allocation(area, 16 * page, PROT_NONE) == 0, "first allocation\n");
    ok(writewatch_add_allocation(area + 16 * page, 16 * page, PROT_NONE) == 0, "second allocation\n");
    ok(writewatch_add_allocation(area + 8 * page, 16 * page, PROT_NONE) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "an overlapping allocation was accepted\n");
    host_commit(area, 16 * page, PROT_READ | PROT_WRITE);
    host_commit(area + 16 * page, 16 * page, PROT_READ | PROT_WRITE);
    area[0] = area[16 * page] = 1;

    ok(get_watch(0, stack_buffer, sizeof(stack_buffer), results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "the stack is not watched\n");
    ok(get_watch(0, heap, page, results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER, "the heap is not watched\n");
    ok(get_watch(0, area, 32 * page, results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "a range spanning two allocations\n");
    ok(get_watch(0, area, 16 * page + 1, results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "one byte past the end\n");
    ok(get_watch(0, area + 15 * page, 2 * page, results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "last page plus the next\n");
    ok(get_watch(0, area + page, (size_t)-page, results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "a range that wraps around\n");
    ok(writewatch_reset_write_watch(area + 8 * page, 16 * page) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "reset spanning two allocations\n");
    ok(writewatch_reset_write_watch(stack_buffer, 1) == WRITEWATCH_STATUS_INVALID_PARAMETER, "reset of the stack\n");
    ok(count == 16, "a failed call changed the count\n");
    expect_pages(0, area, 16, 64, 0);
    expect_pages(0, area + 16 * page, 16, 64, 0);

    writewatch_remove_allocation(area);
    writewatch_remove_allocation(area + 16 * page);
    munmap(area, 32 * page);
    free(heap);
}

/* 4: the range covers every page any byte of it touches */
static void test_unaligned_range_is_rounded_to_pages(void)
{
    char *base = alloc_rw(16);
    uintptr_t count = 64;

    base[2 * page] = base[3 * page] = base[4 * page] = 1;
    ok(get_watch(0, base + 2 * page + 10, page, results, &count) == 0, "unaligned query failed\n");
    ok(count == 2 && results[0] == base + 2 * page && results[1] == base + 3 * page, "got %lu pages\n",
       (unsigned long)count);
    ok(writewatch_reset_write_watch(base + 3 * page - 1, 2) == 0, "unaligned reset failed\n");
    expect_pages(0, base, 16, 64, 4);
    host_free(base, 16 * page);
}

/* 8, 9: a short array gets the first pages; without reset nothing changes */
static void test_short_array_without_reset(void)
{
    char *base = alloc_rw(16);
    int i;

    for (i = 1; i < 16; i += 2) base[i * page] = 1;
    expect_pages(0, base, 16, 3, 1, 3, 5);
    expect_pages(0, base, 16, 3, 1, 3, 5);
    expect_pages(0, base, 16, 64, 1, 3, 5, 7, 9, 11, 13, 15);
    host_free(base, 16 * page);
}

/* 9: with reset, only the pages returned are reset */
static void test_short_array_with_reset_resets_only_returned_pages(void)
{
    char *base = alloc_rw(16);
    int i;

    for (i = 1; i < 16; i += 2) base[i * page] = 1;
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 3, 1, 3, 5);
    expect_pages(0, base, 16, 64, 7, 9, 11, 13, 15);
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 1, 7);
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 64, 9, 11, 13, 15);
    expect_pages(0, base, 16, 64, NONE);
    base[0] = base[15 * page] = 1;
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 64, 0, 15);
    host_free(base, 16 * page);
}

/* 8, 10: sub-ranges */
static void test_sub_range_query_and_reset(void)
{
    char *base = alloc_rw(16);

    base[1 * page] = base[3 * page] = base[4 * page] = base[10 * page] = 1;
    expect_pages(0, base + 3 * page, 2, 64, 0, 1);
    ok(writewatch_reset_write_watch(base, 3 * page) == 0, "reset failed\n");
    expect_pages(0, base, 16, 64, 3, 4, 10);
    expect_pages(WRITEWATCH_FLAG_RESET, base + 4 * page, 12, 64, 0, 6);
    expect_pages(0, base, 16, 64, 3);
    ok(writewatch_reset_write_watch(base, 0) == WRITEWATCH_STATUS_INVALID_PARAMETER, "reset of size 0\n");
    ok(writewatch_reset_write_watch(base, 17 * page) == WRITEWATCH_STATUS_INVALID_PARAMETER, "reset past the end\n");
    expect_pages(0, base, 16, 64, 3);
    host_free(base, 16 * page);
}

/* 2, 16a: reserved and no-access pages report nothing; writes after a
 * later VirtualProtect are tracked */
static void test_reserve_then_commit_then_protect(void)
{
    writewatch_status status;
    char *base = host_alloc(16 * page, 0, &status);

    ok(base != NULL, "reserve failed with %#x\n", (unsigned int)status);
    expect_pages(0, base, 16, 64, NONE);
    ok(writewatch_reset_write_watch(base, 16 * page) == 0, "reset of reserved pages failed\n");
    host_commit(base, 16 * page, PROT_NONE);
    expect_pages(0, base, 16, 64, NONE);
    host_protect(base, 6 * page, PROT_READ | PROT_WRITE);
    base[5 * page] = 1;
    expect_pages(0, base, 16, 64, 5);
    host_free(base, 16 * page);
}

/* 14, 16b: a write stays reported after the page becomes no-access */
static void test_protect_keeps_written_state(void)
{
    writewatch_status status;
    char *base = host_alloc(16 * page, PROT_NONE, &status);

    host_protect(base, 6 * page, PROT_READ | PROT_WRITE);
    base[5 * page] = 1;
    host_protect(base, 6 * page, PROT_NONE);
    expect_pages(0, base, 16, 64, 5);
    ok(writewatch_reset_write_watch(base, 16 * page) == 0, "reset failed\n");
    expect_pages(0, base, 16, 64, NONE);
    host_free(base, 16 * page);
}

/* 14: protection changes are not writes */
static void test_protection_change_is_not_a_write(void)
{
    char *base = alloc_rw(16);

    base[2 * page] = 1;
    host_protect(base, 16 * page, PROT_READ);
    host_protect(base, 16 * page, PROT_READ | PROT_WRITE);
    expect_pages(0, base, 16, 64, 2);
    host_protect(base, 16 * page, PROT_READ | PROT_WRITE | PROT_EXEC);
    expect_pages(0, base, 16, 64, 2);
    host_free(base, 16 * page);
}

/* 16c, 16d: decommit clears what was written since the last protect */
static void test_decommit_clears_unlatched_pages(void)
{
    writewatch_status status;
    char *base = host_alloc(16 * page, PROT_NONE, &status);

    host_decommit(base + page, page);
    host_protect(base + 2 * page, page, PROT_READ | PROT_WRITE);
    expect_pages(0, base, 16, 64, NONE);
    base[2 * page] = 1;
    expect_pages(0, base, 16, 64, 2);
    ok(writewatch_reset_write_watch(base, 16 * page) == 0, "reset failed\n");

    host_commit(base, 16 * page, PROT_NONE);
    host_protect(base, 6 * page, PROT_READ | PROT_WRITE);
    base[3 * page] = base[5 * page] = 1;
    host_decommit(base, 16 * page);
    expect_pages(0, base, 16, 64, NONE);
    host_commit(base, 16 * page, PROT_READ | PROT_WRITE);
    expect_pages(0, base, 16, 64, NONE);
    ok(base[3 * page] == 0, "recommitted memory is not zero\n");
    base[7 * page] = 1;
    expect_pages(0, base, 16, 64, 7);
    host_free(base, 16 * page);
}

/* 16e: a protect latches written pages across decommit until reset */
static void test_latched_pages_survive_decommit(void)
{
    char *base = alloc_rw(16);

    base[3 * page] = 1;
    host_protect(base, 6 * page, PROT_READ | PROT_WRITE);
    base[5 * page] = 1;
    expect_pages(0, base, 16, 64, 3, 5);
    host_decommit(base, 16 * page);
    expect_pages(0, base, 16, 64, 3);
    host_commit(base, 16 * page, PROT_READ | PROT_WRITE);
    expect_pages(0, base, 16, 64, 3);
    base[4 * page] = base[2 * page] = base[6 * page] = 1;
    expect_pages(0, base, 16, 64, 2, 3, 4, 6);
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 2, 2, 3);
    expect_pages(0, base, 16, 64, 4, 6);
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 64, 4, 6);
    expect_pages(0, base, 16, 64, NONE);
    host_free(base, 16 * page);
}

/* A short array with reset stops at the same page whether the pages were
 * latched or written: later ones of both kinds stay reported. */
static void test_latched_and_written_pages_with_short_array(void)
{
    char *base = alloc_rw(16);

    base[1 * page] = base[6 * page] = 1;
    host_protect(base, 16 * page, PROT_READ | PROT_WRITE);
    host_decommit(base + 6 * page, page);
    host_commit(base + 6 * page, page, PROT_READ | PROT_WRITE);
    base[2 * page] = base[8 * page] = 1;
    expect_pages(0, base, 16, 64, 1, 2, 6, 8);
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 3, 1, 2, 6);
    expect_pages(0, base, 16, 64, 8);
    base[6 * page] = base[1 * page] = 1;
    host_protect(base, 16 * page, PROT_READ | PROT_WRITE);
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 1, 1);
    expect_pages(0, base, 16, 64, 6, 8);
    ok(writewatch_reset_write_watch(base + 6 * page, page) == 0, "reset failed\n");
    expect_pages(0, base, 16, 64, 8);
    host_free(base, 16 * page);
}

/* 16f: 2048 pages, every other written, first half made read-only */
static void test_every_other_page_of_2048(void)
{
    char *base = alloc_rw(2048);
    int i, expected_pages[1024];
    uintptr_t count;

    for (i = 0; i < 2048; i += 2) base[i * page] = 1;
    host_protect(base, 1024 * page, PROT_READ);
    for (i = 0; i < 1024; i++) expected_pages[i] = i * 2;
    for (i = 0; i < 2; i++)
    {
        uintptr_t j, wrong = 0;

        count = MAX_PAGES;
        ok(get_watch(i ? WRITEWATCH_FLAG_RESET : 0, base, 2048 * page, results, &count) == 0, "query failed\n");
        ok(count == 1024, "got %lu pages\n", (unsigned long)count);
        for (j = 0; j < count && j < 1024; j++) wrong += results[j] != base + expected_pages[j] * page;
        ok(!wrong, "%lu pages out of order\n", (unsigned long)wrong);
    }
    expect_pages(0, base, 2048, MAX_PAGES, NONE);
    host_free(base, 2048 * page);
}

/* Counts the entries of results[0, count) that are not every other page
 * of base, from page 2 * first on. */
static uintptr_t wrong_even_pages(char *base, uintptr_t count, uintptr_t first)
{
    uintptr_t i, wrong = 0;

    for (i = 0; i < count; i++) wrong += results[i] != base + 2 * (first + i) * page;
    return wrong;
}

/* 16, 16f: answers of as many runs as fill a small answer's batch (and a
 * batch's first walk), one kernel pass of 512 regions, a large answer's
 * batches, and one more, are whole and in order; a short array with reset
 * resets exactly what it returned. */
static void test_answers_around_batch_boundaries(void)
{
    static const size_t runs[] = { 1, SMALL_BATCH - 1, SMALL_BATCH, SMALL_BATCH + 1, 512, 513, 1000, RUN_BATCH - 1,
                                   RUN_BATCH, RUN_BATCH + 1, RUN_BATCH + SMALL_BATCH + 1, 2 * RUN_BATCH + 1 };
    size_t r, i;

    for (r = 0; r < sizeof(runs) / sizeof(runs[0]); r++)
    {
        size_t n = runs[r], pages = 2 * n;
        char *base = alloc_rw(pages);
        uintptr_t count = MAX_PAGES, half = n / 2 + 1;

        for (i = 0; i < pages; i += 2) base[i * page] = 1;
        ok(get_watch(0, base, pages * page, results, &count) == 0 && count == n, "%zu runs: %lu pages\n", n,
           (unsigned long)count);
        ok(!wrong_even_pages(base, count, 0), "%zu runs: wrong pages\n", n);
        count = half;
        ok(get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count) == 0 && count == half,
           "%zu runs: %lu pages in the short array\n", n, (unsigned long)count);
        ok(!wrong_even_pages(base, count, 0), "%zu runs: wrong pages in the short array\n", n);
        count = MAX_PAGES;
        ok(get_watch(0, base, pages * page, results, &count) == 0 && count == n - half,
           "%zu runs: %lu pages after the short array\n", n, (unsigned long)count);
        ok(!wrong_even_pages(base, count, half), "%zu runs: wrong pages after the short array\n", n);
        ok(writewatch_reset_write_watch(base, pages * page) == 0, "%zu runs: reset failed\n", n);
        expect_pages(0, base, pages, MAX_PAGES, NONE);
        host_free(base, pages * page);
    }
}

/* 17: MEM_RELEASE ends the watch */
static void test_release_ends_watch(void)
{
    char *base = alloc_rw(16);
    uintptr_t count = 16;

    base[0] = 1;
    host_free(base, 16 * page);
    ok(get_watch(0, base, 16 * page, results, &count) == WRITEWATCH_STATUS_INVALID_PARAMETER,
       "a released range is still watched\n");
    ok(!writewatch_is_watched(base), "a released range is still watched\n");
}

/* 12: the kernel writing on the program's behalf marks the pages */
static void test_read_from_pipe_marks_pages(void)
{
    char *base = alloc_rw(16), data[2 * 4096 + 3];
    int fds[2];
    ssize_t got;
    uintptr_t i, wrong = 0, count = 64;

    ok(page == 4096, "tests assume 4 KiB pages\n");
    memset(data, 'x', sizeof(data));
    ok(!pipe(fds), "pipe\n");
    ok(write(fds[1], data, sizeof(data)) == (ssize_t)sizeof(data), "write to the pipe\n");
    got = host_read(fds[0], base + page, 16 * page - page);
    ok(got == (ssize_t)sizeof(data), "read returned %zd\n", got);
    ok(base[page + sizeof(data) - 1] == 'x', "data did not arrive\n");

    /* the pages the data landed in, and no other */
    ok(get_watch(0, base, 16 * page, results, &count) == 0, "query failed\n");
    ok(count == 3, "%lu pages reported\n", (unsigned long)count);
    for (i = 0; i < count; i++) wrong += results[i] != base + (i + 1) * page;
    ok(!wrong, "%lu entries are not the data's pages\n", (unsigned long)wrong);
    close(fds[0]);
    close(fds[1]);
    host_free(base, 16 * page);
}

/* A file read the kernel copies into the middle of a page. */
static void test_read_from_file_marks_pages(void)
{
    char *base = alloc_rw(8), path[] = "/tmp/writewatch-test-XXXXXX";
    int fd = mkstemp(path);
    uintptr_t count = 64;

    ok(fd >= 0, "mkstemp\n");
    unlink(path);
    ok(write(fd, "hello", 5) == 5 && !lseek(fd, 0, SEEK_SET), "writing the file\n");
    ok(host_read(fd, base + 6 * page + 10, 5) == 5, "read\n");
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, 8 * page, results, &count) == 0 && count == 1 &&
       results[0] == base + 6 * page, "got %lu pages\n", (unsigned long)count);
    close(fd);
    host_free(base, 8 * page);
}

/* A read that returns nothing, or cannot write, marks nothing and leaves
 * the buffer tracked. */
static void test_empty_or_failed_read_marks_nothing(void)
{
    char *base = alloc_rw(8), data[4];
    int fds[2];

    ok(!pipe(fds), "pipe\n");
    ok(write(fds[1], "abc", 3) == 3, "write to the pipe\n");
    close(fds[1]);
    host_protect(base + 6 * page, page, PROT_READ);
    ok(host_read(fds[0], base + 6 * page, page) == -1 && errno == EFAULT, "read into a read-only page\n");
    ok(read(fds[0], data, sizeof(data)) == 3, "draining the pipe\n");
    ok(host_read(fds[0], base + page, 4 * page) == 0, "read at end of file\n");
    expect_pages(0, base, 8, 64, NONE);
    base[2 * page] = 1;
    expect_pages(0, base, 8, 64, 2);
    close(fds[0]);
    host_free(base, 8 * page);
}

/* Lending a buffer to a system call marks exactly the pages it wrote,
 * whatever the alignment, also across two allocations. */
static void test_lent_buffer_marks_what_was_written(void)
{
    char *area = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    ok(!writewatch_add_allocation(area, 8 * page, PROT_READ | PROT_WRITE), "first allocation\n");
    ok(!writewatch_add_allocation(area + 8 * page, 8 * page, PROT_READ | PROT_WRITE), "second allocation\n");

    writewatch_lend_buffer(area + page + 100, 2 * page);
    writewatch_buffer_written(area + page + 100, 2 * page, 0);
    expect_pages(0, area, 8, 64, NONE);

    writewatch_lend_buffer(area + 6 * page + 100, 4 * page);
    memset(area + 6 * page + 100, 1, page);
    writewatch_buffer_written(area + 6 * page + 100, 4 * page, page);
    expect_pages(0, area, 8, 64, 6, 7);
    expect_pages(0, area + 8 * page, 8, 64, NONE);

    writewatch_remove_allocation(area);
    writewatch_remove_allocation(area + 8 * page);
    munmap(area, 16 * page);
}

/* Many allocations: each query finds its own. */
static void test_many_allocations(void)
{
    char *bases[64];
    int i, wrong = 0;

    for (i = 0; i < 64; i++)
    {
        bases[i] = alloc_rw(4);
        bases[i][(i % 4) * page] = 1;
    }
    for (i = 0; i < 64; i += 3)
    {
        host_free(bases[i], 4 * page);
        bases[i] = NULL;
    }
    for (i = 0; i < 64; i++)
    {
        uintptr_t count = 8;

        if (!bases[i]) continue;
        wrong += get_watch(0, bases[i], 4 * page, results, &count) || count != 1 ||
                 results[0] != bases[i] + (i % 4) * page;
        host_free(bases[i], 4 * page);
    }
    ok(!wrong, "%d allocations answered wrongly\n", wrong);
}

/* Huge pages stay out of watched ranges: a written 2 MiB run and a
 * single page beside it are reported and reset page by page. */
static void test_large_writes_are_page_exact(void)
{
    size_t pages = 2048, i, wrong = 0;
    char *base = alloc_rw(pages);
    uintptr_t count = MAX_PAGES;

    memset(base + 512 * page, 1, 512 * page);
    base[1500 * page] = 1;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count) == 0, "query failed\n");
    ok(count == 513, "got %lu pages\n", (unsigned long)count);
    for (i = 0; i < 512 && i < count; i++) wrong += results[i] != base + (512 + i) * page;
    ok(!wrong && count == 513 && results[512] == base + 1500 * page, "wrong pages\n");
    base[700 * page] = 1;
    expect_pages(0, base, pages, MAX_PAGES, 700);
    host_free(base, pages * page);
}

/* The array itself may lie in the watched range. */
static void test_array_inside_watched_range(void)
{
    char *base = alloc_rw(16);
    void **array = (void **)(base + 8 * page);
    uintptr_t count = 4;

    base[2 * page] = 1;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, 8 * page, array, &count) == 0, "query failed\n");
    ok(count == 1 && array[0] == base + 2 * page, "got %lu pages\n", (unsigned long)count);
    expect_pages(0, base + 8 * page, 8, 64, 0);
    host_free(base, 16 * page);
}

/* 6, 21: output pointers the caller cannot write fail with an access
 * violation before anything is reset, and leave no lock taken. */
static void test_unwritable_outputs_change_nothing(void)
{
    char *base = alloc_rw(16);
    char *out = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* 16 entries, the last two in a read-only page */
    void **array = (void **)(out + page - 14 * sizeof(void *));
    uintptr_t count = 16, *read_only_count = (uintptr_t *)(out + 2 * page);
    uint32_t granularity, *read_only_granularity = (uint32_t *)(out + 2 * page + 64);

    base[page] = base[3 * page] = 1;
    *read_only_count = 16;
    ok(!mprotect(out + page, 2 * page, PROT_READ), "mprotect\n");
    ok(host_get_write_watch(WRITEWATCH_FLAG_RESET, base, 16 * page, array, &count, &granularity) ==
       WRITEWATCH_STATUS_ACCESS_VIOLATION, "an array running into a read-only page\n");
    ok(count == 16, "the count changed\n");
    ok(host_get_write_watch(WRITEWATCH_FLAG_RESET, base, 16 * page, results, read_only_count, &granularity) ==
       WRITEWATCH_STATUS_ACCESS_VIOLATION, "a read-only count\n");
    ok(host_get_write_watch(WRITEWATCH_FLAG_RESET, base, 16 * page, results, &count, read_only_granularity) ==
       WRITEWATCH_STATUS_ACCESS_VIOLATION, "a read-only granularity\n");
    ok(other_thread_can_query(base, 16), "a faulting call left the lock taken\n");
    expect_pages(0, base, 16, 64, 1, 3);
    munmap(out, 3 * page);
    host_free(base, 16 * page);
}

/* The array may lie in a clean page of another watched allocation: the
 * module writes it outside the lock, and the page is then written. */
static void test_array_in_another_watched_allocation(void)
{
    char *base = alloc_rw(16), *other = alloc_rw(16);
    void **array = (void **)(other + 4 * page);
    uintptr_t count = 16;

    base[2 * page] = 1;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, 16 * page, array, &count) == 0, "query failed\n");
    ok(count == 1 && array[0] == base + 2 * page, "got %lu pages\n", (unsigned long)count);
    expect_pages(0, other, 16, 64, 4);
    expect_pages(0, base, 16, 64, NONE);
    host_free(other, 16 * page);
    host_free(base, 16 * page);
}

/* 18: MEM_RESET is not a write, and forgets no write. */
static void test_discard_keeps_written_state(void)
{
    char *base = alloc_rw(16);

    base[page] = base[9 * page] = 1;
    host_discard(base, 12 * page);
    expect_pages(0, base, 16, 64, 1, 9);
    ok(writewatch_reset_write_watch(base, 16 * page) == 0, "reset failed\n");
    host_discard(base, 16 * page);
    expect_pages(0, base, 16, 64, NONE);
    base[2 * page] = 1;
    expect_pages(0, base, 16, 64, 2);
    host_free(base, 16 * page);
}

/* 16: written pages a resetting call took past a short array's end stay
 * reported like any written page: a decommit clears them, where it keeps
 * latched ones. */
static void test_pages_past_a_short_array_follow_decommit(void)
{
    char *base = alloc_rw(16);

    base[page] = 1;
    host_protect(base, 16 * page, PROT_READ | PROT_WRITE);
    host_decommit(base + page, page);
    host_commit(base + page, page, PROT_READ | PROT_WRITE);
    base[5 * page] = base[6 * page] = 1;
    expect_pages(WRITEWATCH_FLAG_RESET, base, 16, 2, 1, 5);
    expect_pages(0, base, 16, 64, 6);
    host_decommit(base + 6 * page, page);
    expect_pages(0, base, 16, 64, NONE);
    host_free(base, 16 * page);
}

/* 12: a write the host makes behind the tracking, as WriteProcessMemory does
 * through /proc/PID/mem (which writes even read-only pages), is marked once
 * the host says so. */
static void test_write_behind_tracking_is_marked(void)
{
    char *base = alloc_rw(16);
    int fd = open("/proc/self/mem", O_RDWR);

    ok(fd >= 0, "/proc/self/mem\n");
    ok(pwrite64(fd, "hello", 5, (off64_t)(uintptr_t)(base + 3 * page + 10)) == 5, "pwrite\n");
    writewatch_buffer_written(base + 3 * page + 10, 5, 5);
    ok(base[3 * page + 10] == 'h', "the data did not arrive\n");
    expect_pages(0, base, 16, 64, 3);
    base[7 * page] = 1;
    expect_pages(0, base, 16, 64, 3, 7);
    close(fd);
    host_free(base, 16 * page);
}

/* ResetWriteWatch resets exactly the range. */
static void test_reset_resets_exactly_the_range(void)
{
    char *base = alloc_rw(64);
    int i;

    for (i = 0; i < 64; i += 3) base[i * page] = 1;
    ok(writewatch_reset_write_watch(base + 10 * page, 20 * page) == 0, "reset failed\n");
    expect_pages(0, base, 40, 64, 0, 3, 6, 9, 30, 33, 36, 39);
    base[12 * page] = 1;
    expect_pages(WRITEWATCH_FLAG_RESET, base + 10 * page, 20, 64, 2);
    expect_pages(0, base, 16, 64, 0, 3, 6, 9);
    host_free(base, 64 * page);
}

static long read_number(const char *path)
{
    FILE *file = fopen(path, "r");
    long value = -1;

    if (file && fscanf(file, "%ld", &value) != 1) value = -1;
    if (file) fclose(file);
    return value;
}

static long mapping_count(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    long lines = 0;
    int c;

    if (!maps) return -1;
    while ((c = fgetc(maps)) != EOF) lines += c == '\n';
    fclose(maps);
    return lines;
}

static void write_every_page(void *arg)
{
    char *base = arg;
    size_t i;

    for (i = 0; i < 512; i += 2) base[i * page] = 1;
    for (i = 1; i < 512; i += 2) base[i * page] = 1;
}

/* 23: past vm.max_map_count mprotect cannot split a mapping, which the fallback
 * needs for each run of written pages: then writes still land, and every
 * written page is reported (some clean ones may be too). */
static void test_writes_past_the_mapping_limit(void)
{
    long limit = read_number("/proc/sys/vm/max_map_count"), spare = 32, fillers, i;
    const char *preload = getenv("LD_PRELOAD");
    char *base = alloc_rw(512), *filler;
    uintptr_t count = MAX_PAGES;

    if (preload && strstr(preload, "vgpreload"))
    {
        printf("skipped: valgrind needs mappings of its own\n");
        host_free(base, 512 * page);
        return;
    }
    /* every other page of the filler is a mapping of its own */
    fillers = limit - mapping_count() - spare;
    filler = mmap(NULL, 2 * fillers * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ok(limit > 0 && filler != MAP_FAILED, "cannot fill the mappings\n");
    if (filler == MAP_FAILED) return;
    for (i = 0; i < fillers; i++) mprotect(filler + 2 * i * page, page, PROT_READ);

    ok(!host_faults(write_every_page, base), "a write faulted at the mapping limit\n");
    munmap(filler, 2 * fillers * page);
    ok(get_watch(0, base, 512 * page, results, &count) == 0 && count == 512, "%lu of 512 written pages reported\n",
       (unsigned long)count);
    host_free(base, 512 * page);
}

/* Whether page i of the interleaved case is reported: latched even pages,
 * and written pages 1 mod 4. */
static int interleaved_page(size_t i)
{
    return i % 2 == 0 || i % 4 == 1;
}

/* Counts the entries of results[0, count) that are not the reported pages
 * of the interleaved case, in order, from page *next on. */
static uintptr_t wrong_interleaved_pages(char *base, uintptr_t count, size_t *next)
{
    uintptr_t i, wrong = 0;

    for (i = 0; i < count; i++)
    {
        while (!interleaved_page(*next)) (*next)++;
        wrong += results[i] != base + (*next)++ * page;
    }
    return wrong;
}

/* 11, 16: an answer of more runs than one batch holds, made of latched
 * pages and written ones between them, is whole and in order, and a short
 * array with reset resets exactly what it returned, across batches. */
static void test_latched_and_written_pages_across_batches(void)
{
    size_t pages = MAX_PAGES, next = 0, i;
    char *base = alloc_rw(pages);
    uintptr_t count = MAX_PAGES;

    for (i = 0; i < pages; i += 2) base[i * page] = 1;
    host_protect(base, pages * page, PROT_READ | PROT_WRITE);
    host_decommit(base, pages * page);
    host_commit(base, pages * page, PROT_READ | PROT_WRITE);
    for (i = 1; i < pages; i += 4) base[i * page] = 1;

    ok(get_watch(0, base, pages * page, results, &count) == 0 && count == 3 * pages / 4, "%lu pages\n",
       (unsigned long)count);
    ok(!wrong_interleaved_pages(base, count, &next), "wrong pages without reset\n");
    count = 3000;
    next = 0;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count) == 0 && count == 3000, "%lu pages\n",
       (unsigned long)count);
    ok(!wrong_interleaved_pages(base, count, &next), "wrong pages in the short array\n");
    count = MAX_PAGES;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count) == 0 && count == 3 * pages / 4 - 3000,
       "%lu pages after the short array\n", (unsigned long)count);
    ok(!wrong_interleaved_pages(base, count, &next), "wrong pages after the short array\n");
    expect_pages(0, base, pages, MAX_PAGES, NONE);
    host_free(base, pages * page);
}

/* 2: a large reservation reports nothing and costs no page tables until
 * it is committed; committed pages in it are tracked exactly. */
static void test_large_reservation_costs_no_page_tables(void)
{
    /* 64 GiB, or on 32-bit hosts 1 GiB, whose page tables would be 2 MiB */
    size_t size = (size_t)1 << (sizeof(void *) == 8 ? 36 : 30);
    long before = page_table_kib(STATUS_PATH), grown;
    writewatch_status status;
    uintptr_t count = MAX_PAGES;
    char *base;

    /* valgrind, for one, keeps mappings this large from its programs */
    base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
    {
        printf("skipped: this process cannot map %zu MiB\n", size >> 20);
        return;
    }
    munmap(base, size);
    base = host_alloc(size, 0, &status);

    ok(base != NULL, "reserving %zu MiB failed with %#x\n", size >> 20, (unsigned int)status);
    if (!base) return;
    ok(get_watch(0, base, size, results, &count) == 0 && count == 0, "%lu reserved pages reported\n",
       (unsigned long)count);
    ok(writewatch_reset_write_watch(base, size) == 0, "reset of the reservation failed\n");
    grown = page_table_kib(STATUS_PATH) - before;
    ok(grown < 1024, "reserving, querying and resetting %zu MiB took %ld KiB of page tables\n", size >> 20, grown);
    host_commit(base + size / 2, 16 * page, PROT_READ | PROT_WRITE);
    base[size / 2 + 3 * page] = 1;
    (void)*(volatile char *)(base + size / 2 + 5 * page);
    count = MAX_PAGES;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, size, results, &count) == 0 && count == 1 &&
       results[0] == base + size / 2 + 3 * page, "committed pages: %lu reported\n", (unsigned long)count);
    count = MAX_PAGES;
    ok(get_watch(0, base, size, results, &count) == 0 && count == 0, "%lu pages after reset\n",
       (unsigned long)count);
    host_free(base, size);
}

/* 25: a process that never watches memory pays nothing for the module:
 * writewatch_init() opens nothing, and the backend starts with the first
 * watched allocation. */
static void test_start_up_waits_for_watched_memory(void)
{
    int at_start = -1, watching = -1, needed = -1;
    char out[64];

    run_mode("--start-up", out, sizeof(out));
    ok(sscanf(out, "%d %d %d", &at_start, &watching, &needed) == 3, "--start-up said \"%s\"\n", out);
    ok(at_start == 0, "%d descriptors open at start\n", at_start);
    ok(watching == needed, "%d descriptors open once watching, %d needed\n", watching, needed);
}

extern void test_stress_stop_the_world(void);

const struct test writewatch_tests[] =
{
    { "start_up_waits_for_watched_memory", test_start_up_waits_for_watched_memory },
    { "fresh_allocation_reports_nothing", test_fresh_allocation_reports_nothing },
    { "write_marks_page_in_ascending_order", test_write_marks_page_in_ascending_order },
    { "store_straddling_pages_marks_both", test_store_straddling_pages_marks_both },
    { "repeated_writes_give_one_entry", test_repeated_writes_give_one_entry },
    { "reads_do_not_mark", test_reads_do_not_mark },
    { "faulting_write_does_not_mark", test_faulting_write_does_not_mark },
    { "parameter_checks_in_wine_order", test_parameter_checks_in_wine_order },
    { "failed_call_writes_nothing", test_failed_call_writes_nothing },
    { "range_inside_one_watched_allocation", test_range_must_be_inside_one_watched_allocation },
    { "unaligned_range_is_rounded_to_pages", test_unaligned_range_is_rounded_to_pages },
    { "short_array_without_reset", test_short_array_without_reset },
    { "short_array_with_reset", test_short_array_with_reset_resets_only_returned_pages },
    { "sub_range_query_and_reset", test_sub_range_query_and_reset },
    { "reserve_then_commit_then_protect", test_reserve_then_commit_then_protect },
    { "protect_keeps_written_state", test_protect_keeps_written_state },
    { "protection_change_is_not_a_write", test_protection_change_is_not_a_write },
    { "decommit_clears_unlatched_pages", test_decommit_clears_unlatched_pages },
    { "latched_pages_survive_decommit", test_latched_pages_survive_decommit },
    { "latched_and_written_short_array", test_latched_and_written_pages_with_short_array },
    { "every_other_page_of_2048", test_every_other_page_of_2048 },
    { "answers_around_batch_boundaries", test_answers_around_batch_boundaries },
    { "latched_and_written_across_batches", test_latched_and_written_pages_across_batches },
    { "large_reservation_costs_no_page_tables", test_large_reservation_costs_no_page_tables },
    { "release_ends_watch", test_release_ends_watch },
    { "read_from_pipe_marks_pages", test_read_from_pipe_marks_pages },
    { "read_from_file_marks_pages", test_read_from_file_marks_pages },
    { "empty_or_failed_read_marks_nothing", test_empty_or_failed_read_marks_nothing },
    { "lent_buffer_marks_what_was_written", test_lent_buffer_marks_what_was_written },
    { "many_allocations", test_many_allocations },
    { "large_writes_are_page_exact", test_large_writes_are_page_exact },
    { "array_inside_watched_range", test_array_inside_watched_range },
    { "unwritable_outputs_change_nothing", test_unwritable_outputs_change_nothing },
    { "array_in_another_watched_allocation", test_array_in_another_watched_allocation },
    { "discard_keeps_written_state", test_discard_keeps_written_state },
    { "pages_past_a_short_array_follow_decommit", test_pages_past_a_short_array_follow_decommit },
    { "write_behind_tracking_is_marked", test_write_behind_tracking_is_marked },
    { "reset_resets_exactly_the_range", test_reset_resets_exactly_the_range },
    { "writes_past_the_mapping_limit", test_writes_past_the_mapping_limit },
    { "stress_stop_the_world", test_stress_stop_the_world },
    { NULL, NULL }
};
