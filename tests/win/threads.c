/*
 * The write-watch API in a multithreaded program, as garbage collectors use
 * it: threads suspended to stop the world, VirtualProtect and decommit
 * beside a collection, result arrays in watched heaps.  Every wait is
 * bounded: a hang fails the run instead of stalling it.
 *
 * Windows serializes these calls under its address-space lock: every call
 * succeeds, or fails with ERROR_INVALID_PARAMETER once its range is no
 * longer a watched allocation; a suspended thread never holds anything
 * another thread waits for; decommitted pages always fault (19-22 in
 * tests/semantics.md).
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windef.h>
#include <winbase.h>

#include "wine/test.h"
#include "wintest.h"

/* Ends the run when *progress stops moving for ms: a thread is hung. */
struct watchdog
{
    volatile LONG *progress;
    DWORD ms;
    const char *what;
    volatile LONG stop;
    HANDLE thread, stalled;
};

static DWORD WINAPI watchdog_thread(void *arg)
{
    struct watchdog *dog = arg;
    LONG last = *dog->progress;
    DWORD since = GetTickCount();

    while (!dog->stop)
    {
        Sleep(50);
        if (*dog->progress != last)
        {
            last = *dog->progress;
            since = GetTickCount();
        }
        else if (GetTickCount() - since > dog->ms)
        {
            ok(0, "%s made no progress for %lu ms\n", dog->what, dog->ms);
            hang(dog->stalled, dog->what);
        }
    }
    return 0;
}

/* stalled: the thread whose progress it watches, for the hang report */
static void start_watchdog(struct watchdog *dog, volatile LONG *progress, DWORD ms, const char *what, HANDLE stalled)
{
    dog->progress = progress;
    dog->stalled = stalled;
    dog->ms = ms;
    dog->what = what;
    dog->stop = 0;
    dog->thread = CreateThread(NULL, 0, watchdog_thread, dog, 0, NULL);
}

static void stop_watchdog(struct watchdog *dog)
{
    dog->stop = 1;
    join_or_die(dog->thread, 10000, "the watchdog");
}

static DWORD WINAPI protect_and_query(void *arg)
{
    char *base = arg;
    void *array[64];
    ULONG_PTR count = 64;
    ULONG granularity;
    DWORD old;

    VirtualProtect(base + 8 * PAGE, PAGE, PAGE_READWRITE, &old);
    GetWriteWatch(0, base, 16 * PAGE, array, &count, &granularity);
    return 0;
}

/* Output pointers the caller cannot write fail with ERROR_NOACCESS before
 * anything is reset, and leave nothing locked for other threads. */
static void test_unwritable_outputs(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    char *out = VirtualAlloc(NULL, 3 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    /* 16 entries, the last two in a read-only page */
    void **array = (void **)(out + PAGE - 14 * sizeof(void *));
    ULONG_PTR count = 16, *read_only_count = (ULONG_PTR *)(out + 2 * PAGE);
    ULONG granularity, *read_only_granularity = (ULONG *)(out + 2 * PAGE + 64);
    DWORD old;

    base[PAGE] = base[3 * PAGE] = 1;
    *read_only_count = 16;
    ok(VirtualProtect(out + PAGE, 2 * PAGE, PAGE_READONLY, &old), "VirtualProtect\n");
    EXPECT_ERROR(GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, array, &count, &granularity), ERROR_NOACCESS);
    ok(count == 16, "a failed call changed the count\n");
    EXPECT_ERROR(GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, results, read_only_count, &granularity),
                 ERROR_NOACCESS);
    EXPECT_ERROR(GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, results, &count, read_only_granularity),
                 ERROR_NOACCESS);
    join_or_die(CreateThread(NULL, 0, protect_and_query, base, 0, NULL), 10000,
                "another thread's VirtualProtect and GetWriteWatch");
    expect_pages(0, base, 16, 64, 1, 3);
    VirtualFree(out, 0, MEM_RELEASE);
    VirtualFree(base, 0, MEM_RELEASE);
}

struct beside
{
    char *heap, *home, *other;
    volatile LONG stop, progress, failures;
};

static DWORD WINAPI keep_protecting(void *arg)
{
    struct beside *b = arg;
    DWORD old;

    while (!b->stop) VirtualProtect(b->heap, 64 * PAGE, PAGE_READWRITE, &old);
    return 0;
}

static DWORD WINAPI keep_writing_clean_pages(void *arg)
{
    struct beside *b = arg;
    unsigned int i;

    for (i = 0; !b->stop; i++)
    {
        b->heap[(i % 32) * PAGE] = 1;
        b->other[(i % 16) * PAGE] = 1;
        if (i % 16 == 15) ResetWriteWatch(b->other, 16 * PAGE);
    }
    return 0;
}

static DWORD WINAPI collect_into_home(void *arg)
{
    struct beside *b = arg;
    unsigned int i;

    for (i = 0; i < 10000; i++)
    {
        ULONG_PTR count = 16;
        ULONG granularity;

        /* the array's page is clean again for each call */
        if (ResetWriteWatch(b->home, PAGE)) b->failures++;
        if (GetWriteWatch(WRITE_WATCH_FLAG_RESET, b->heap, 64 * PAGE, (void **)b->home, &count, &granularity))
            b->failures++;
        InterlockedIncrement(&b->progress);
    }
    return 0;
}

/* The array lies in a clean page of another watched allocation, while
 * other threads change protections and write clean watched pages. */
static void test_array_in_clean_page_beside_protect(void)
{
    struct beside b = { 0 };
    HANDLE threads[2];
    int i;

    b.heap = alloc_watched(64 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    b.home = alloc_watched(PAGE, MEM_COMMIT, PAGE_READWRITE);
    b.other = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    threads[0] = CreateThread(NULL, 0, keep_protecting, &b, 0, NULL);
    threads[1] = CreateThread(NULL, 0, keep_writing_clean_pages, &b, 0, NULL);
    join_or_die(CreateThread(NULL, 0, collect_into_home, &b, 0, NULL), 60000, "the collector");
    b.stop = 1;
    for (i = 0; i < 2; i++) join_or_die(threads[i], 10000, "a helper");
    ok(b.progress == 10000 && !b.failures, "%ld calls, %ld failed\n", b.progress, b.failures);
    VirtualFree(b.other, 0, MEM_RELEASE);
    VirtualFree(b.home, 0, MEM_RELEASE);
    VirtualFree(b.heap, 0, MEM_RELEASE);
}

struct busy
{
    char *heap;
    SIZE_T size;
    volatile LONG stop, calls, failures, last_error;
};

/* GetWriteWatch and ResetWriteWatch over 64 MiB, over and over: most of
 * the time this thread is inside one of them. */
static DWORD WINAPI keep_collecting(void *arg)
{
    struct busy *b = arg;
    void *array[16];

    while (!b->stop)
    {
        ULONG_PTR count = 16;
        ULONG granularity;

        if (GetWriteWatch(WRITE_WATCH_FLAG_RESET, b->heap, b->size, array, &count, &granularity))
        {
            b->last_error = GetLastError();
            b->failures++;
        }
        if (ResetWriteWatch(b->heap, b->size))
        {
            b->last_error = GetLastError() | 0x10000;
            b->failures++;
        }
        InterlockedIncrement(&b->calls);
    }
    return 0;
}

static DWORD WINAPI protect_page(void *arg)
{
    DWORD old;

    VirtualProtect(arg, PAGE, PAGE_READWRITE, &old);
    return 0;
}

/* A thread suspended inside NtGetWriteWatch or NtResetWriteWatch, as a
 * profiler or a collector stopping the world does it, holds up nobody:
 * VirtualProtect in other threads, and CreateThread in the suspending one,
 * go on. */
static void test_suspended_inside_a_call(void)
{
    struct busy b = { 0 };
    struct watchdog dog;
    volatile LONG rounds = 0;
    HANDLE worker;
    CONTEXT context;
    SIZE_T i;

    b.size = 64 << 20;
    b.heap = alloc_watched(b.size, MEM_COMMIT, PAGE_READWRITE);
    for (i = 0; i < b.size; i += 16 * PAGE) b.heap[i] = 1;
    worker = CreateThread(NULL, 0, keep_collecting, &b, 0, NULL);
    name_in_hang_reports(worker, "the collector that the main thread suspends");
    /* A thread suspended while it starts can hold the loader's or the
     * heap's lock, which the threads created below need, on Windows as
     * under Wine: the rounds start once it is in its loop. */
    for (i = 0; !b.calls && i < 10000; i++) Sleep(1);
    ok(b.calls > 0, "the collector did not start\n");
    start_watchdog(&dog, &rounds, 30000, "stopping a thread inside GetWriteWatch", NULL);
    for (i = 0; i < 200; i++)
    {
        ok(SuspendThread(worker) == 0, "SuspendThread\n");
        context.ContextFlags = CONTEXT_CONTROL;
        ok(GetThreadContext(worker, &context), "GetThreadContext\n");
        join_or_die(CreateThread(NULL, 0, protect_page, b.heap + (i % 16) * PAGE, 0, NULL), 10000,
                    "VirtualProtect in a new thread while another is suspended");
        ok(ResumeThread(worker) == 1, "ResumeThread\n");
        b.heap[(i % 64) * 16 * PAGE] = 1;
        InterlockedIncrement(&rounds);
        Sleep(1);
    }
    stop_watchdog(&dog);
    b.stop = 1;
    name_in_hang_reports(worker, NULL);
    join_or_die(worker, 30000, "the collector");
    ok(!b.failures && b.calls > 0, "%ld calls, %ld failed, the last with error %#lx (0x10000: ResetWriteWatch)\n",
       b.calls, b.failures, b.last_error);
    VirtualFree(b.heap, 0, MEM_RELEASE);
}

/* The world the stress test and the race test share: writers stamp the
 * heap's first pages, its last CHURN pages are decommitted, recommitted
 * and re-protected, and a transient allocation is released and
 * re-allocated, while a collector resets with a short array. */
#define HEAP_PAGES 512
#define CHURN 64
#define WRITERS 3
#define BLOCK 8
#define ARRAY 16

struct world
{
    char *heap, *home;
    char *volatile transient;
    volatile LONG stop_writers, stop_churner, started;
    volatile LONG progress, calls, churns, suspensions, bad_statuses, readable, false_reports;
    LONG64 final_stamp[HEAP_PAGES], last_seen[HEAP_PAGES];
    LONG64 writes;
};

enum role { HOT, CLEAN, CHURNED };

static enum role page_role(SIZE_T index)
{
    if (index >= HEAP_PAGES - CHURN) return CHURNED;
    return index % BLOCK == BLOCK - 1 ? CLEAN : HOT;
}

struct writer_arg
{
    struct world *w;
    int id;
};

/* a 64-bit store that a collector never sees half done, in a 32-bit
 * program too */
static void store_stamp(LONG64 volatile *stamp, LONG64 value)
{
    LONG64 old = *stamp;

    while (InterlockedCompareExchange64(stamp, value, old) != old) old = *stamp;
}

static DWORD WINAPI stamp_pages(void *arg)
{
    struct writer_arg *a = arg;
    struct world *w = a->w;
    unsigned int seed = a->id * 7919 + 1;

    InterlockedIncrement(&w->started);
    while (!w->stop_writers)
    {
        SIZE_T index;

        seed = seed * 1103515245 + 12345;
        index = (seed >> 8) % HEAP_PAGES;
        if (page_role(index) != HOT || index / BLOCK % WRITERS != (SIZE_T)a->id) continue;
        store_stamp((LONG64 *)(w->heap + index * PAGE), ++w->final_stamp[index]);
        InterlockedIncrement64(&w->writes);
    }
    return 0;
}

/* One collector call; returns the pages reported. */
static ULONG_PTR collect(struct world *w)
{
    void **array = (void **)w->home;
    ULONG_PTR count = ARRAY, i;
    ULONG granularity;

    if (GetWriteWatch(WRITE_WATCH_FLAG_RESET, w->heap, HEAP_PAGES * PAGE, array, &count, &granularity))
    {
        w->bad_statuses++;
        return 0;
    }
    for (i = 0; i < count; i++)
    {
        SIZE_T index = ((char *)array[i] - w->heap) / PAGE;

        /* a plain load: a locked compare-exchange would write the page */
        if (page_role(index) == HOT) w->last_seen[index] = *(volatile LONG64 *)(w->heap + index * PAGE);
        else w->false_reports++;
    }
    return count;
}

/* A released allocation is no longer watched: Windows says so, and says
 * nothing else. */
static void query_transient(struct world *w)
{
    void *array[ARRAY];
    ULONG_PTR count = ARRAY;
    ULONG granularity;

    SetLastError(0);
    if (GetWriteWatch(0, w->transient, 16 * PAGE, array, &count, &granularity) &&
        GetLastError() != ERROR_INVALID_PARAMETER) w->bad_statuses++;
}

static DWORD WINAPI collector(void *arg)
{
    struct world *w = arg;

    InterlockedIncrement(&w->started);
    while (!w->stop_churner)
    {
        collect(w);
        if (w->calls % 16 == 5) query_transient(w);
        if (w->calls % 64 == 9 && ResetWriteWatch(w->heap + (HEAP_PAGES - CHURN) * PAGE, CHURN * PAGE))
            w->bad_statuses++;
        InterlockedIncrement(&w->calls);
        InterlockedIncrement(&w->progress);
    }
    return 0;
}

static DWORD WINAPI churner(void *arg)
{
    struct world *w = arg;
    char *churn = w->heap + (HEAP_PAGES - CHURN) * PAGE;
    unsigned int seed = 99;

    InterlockedIncrement(&w->started);    DWORD old;

    while (!w->stop_churner)
    {
        SIZE_T first, pages, i;
        char *previous;

        seed = seed * 1103515245 + 12345;
        first = (seed >> 8) % CHURN;
        pages = 1 + (seed >> 16) % (CHURN - first);
        VirtualProtect(churn + first * PAGE, pages * PAGE, seed & 1 ? PAGE_READONLY : PAGE_READWRITE, &old);
        VirtualFree(churn + first * PAGE, pages * PAGE, MEM_DECOMMIT);
        /* decommitted pages fault, whatever a reset did meanwhile */
        for (i = first; i < first + pages; i++) w->readable += !IsBadReadPtr(churn + i * PAGE, 1);
        VirtualAlloc(churn + first * PAGE, pages * PAGE, MEM_COMMIT, PAGE_READWRITE);
        previous = w->transient;
        w->transient = VirtualAlloc(NULL, 16 * PAGE, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE);
        VirtualFree(previous, 0, MEM_RELEASE);
        InterlockedIncrement(&w->churns);
        InterlockedIncrement(&w->progress);
    }
    return 0;
}

static DWORD WINAPI query_once(void *arg)
{
    struct world *w = arg;
    void *array[ARRAY];
    ULONG_PTR count = ARRAY;
    ULONG granularity;
    DWORD old;

    VirtualProtect(w->heap + (BLOCK - 1) * PAGE, PAGE, PAGE_READWRITE, &old);
    if (GetWriteWatch(0, w->heap, HEAP_PAGES * PAGE, array, &count, &granularity)) w->bad_statuses++;
    return 0;
}

/* Suspends every thread, makes sure each is stopped, works beside them
 * from a new thread, and resumes them. */
static void stop_the_world_once(struct world *w, HANDLE *threads, int count)
{
    CONTEXT context;
    int i;

    for (i = 0; i < count; i++) SuspendThread(threads[i]);
    for (i = 0; i < count; i++)
    {
        context.ContextFlags = CONTEXT_CONTROL;
        GetThreadContext(threads[i], &context);
    }
    join_or_die(CreateThread(NULL, 0, query_once, w, 0, NULL), 10000, "a thread started with the world stopped");
    for (i = 0; i < count; i++) ResumeThread(threads[i]);
    w->suspensions++;
}

static struct world *make_world(void)
{
    struct world *w = VirtualAlloc(NULL, sizeof(*w), MEM_COMMIT, PAGE_READWRITE);

    w->heap = alloc_watched(HEAP_PAGES * PAGE, MEM_COMMIT, PAGE_READWRITE);
    w->home = alloc_watched(PAGE, MEM_COMMIT, PAGE_READWRITE);
    w->transient = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    return w;
}

/* Runs the world for ms, stopping it every few milliseconds when
 * suspend is set, then checks it: no lost write, no false page, only
 * statuses Windows returns, no readable decommitted page. */
static void run_world(struct world *w, DWORD ms, BOOL suspend, const char *name)
{
    struct writer_arg args[WRITERS];
    HANDLE threads[WRITERS + 2];
    struct watchdog dog;
    DWORD start = GetTickCount();
    SIZE_T index, lost = 0;
    int i;

    for (i = 0; i < WRITERS; i++)
    {
        args[i].w = w;
        args[i].id = i;
        threads[i] = CreateThread(NULL, 0, stamp_pages, &args[i], 0, NULL);
    }
    threads[WRITERS] = CreateThread(NULL, 0, collector, w, 0, NULL);
    threads[WRITERS + 1] = CreateThread(NULL, 0, churner, w, 0, NULL);
    name_in_hang_reports(threads[WRITERS + 1], "the churner");
    /* threads are stopped only once they started: see
     * test_suspended_inside_a_call */
    for (i = 0; w->started < WRITERS + 2 && i < 10000; i++) Sleep(1);
    ok(w->started == WRITERS + 2, "%ld of %d threads started\n", w->started, WRITERS + 2);
    start_watchdog(&dog, &w->progress, 30000, name, threads[WRITERS]);
    while (GetTickCount() - start < ms)
    {
        if (suspend) stop_the_world_once(w, threads, WRITERS + 2);
        Sleep(2);
    }
    stop_watchdog(&dog);
    name_in_hang_reports(threads[WRITERS + 1], NULL);
    w->stop_churner = 1;
    join_or_die(threads[WRITERS], 30000, "the collector");
    join_or_die(threads[WRITERS + 1], 30000, "the churner");
    w->stop_writers = 1;
    for (i = 0; i < WRITERS; i++) join_or_die(threads[i], 30000, "a writer");
    while (collect(w) == ARRAY);

    for (index = 0; index < HEAP_PAGES; index++)
        if (page_role(index) == HOT && w->last_seen[index] != w->final_stamp[index]) lost++;
    trace("%s: %lu ms, %ld collector calls, %ld suspensions, %ld churns, %llu writes: %llu lost, %ld false, "
          "%ld bad statuses, %ld readable decommitted pages\n", name, GetTickCount() - start, w->calls,
          w->suspensions, w->churns, (unsigned long long)w->writes, (unsigned long long)lost, w->false_reports,
          w->bad_statuses, w->readable);
    ok(!lost, "%Iu pages lost a write\n", lost);
    ok(!w->false_reports, "%ld false reports\n", w->false_reports);
    ok(!w->bad_statuses, "%ld statuses Windows does not return\n", w->bad_statuses);
    ok(!w->readable, "%ld decommitted pages were readable\n", w->readable);
    ok(w->calls > 0 && w->churns > 0 && (!suspend || w->suspensions > 0), "the threads did not run\n");
    VirtualFree(w->transient, 0, MEM_RELEASE);
    VirtualFree(w->home, 0, MEM_RELEASE);
    VirtualFree(w->heap, 0, MEM_RELEASE);
    VirtualFree(w, 0, MEM_RELEASE);
}

/* Decommit, recommit and release beside a collector that resets. */
static void test_decommit_and_release_race(void)
{
    run_world(make_world(), 2000, FALSE, "decommit and release race");
}

/* Everything at once, the world stopped every few milliseconds, for
 * WRITEWATCH_STRESS_SECONDS (10 by default). */
static void test_stop_the_world(void)
{
    char seconds[16];
    DWORD ms = 10000;

    if (GetEnvironmentVariableA("WRITEWATCH_STRESS_SECONDS", seconds, sizeof(seconds))) ms = atoi(seconds) * 1000;
    run_world(make_world(), ms, TRUE, "stop the world");
}

START_TEST(threads)
{
    static const struct test_case cases[] =
    {
        { "unwritable_outputs", test_unwritable_outputs },
        { "array_in_clean_page_beside_protect", test_array_in_clean_page_beside_protect },
        { "decommit_and_release_race", test_decommit_and_release_race },
    };

    run_cases(cases, ARRAY_SIZE(cases));
}

START_TEST(suspend)
{
    static const struct test_case cases[] =
    {
        { "suspended_inside_a_call", test_suspended_inside_a_call },
        { "stop_the_world", test_stop_the_world },
    };

    run_cases(cases, ARRAY_SIZE(cases));
}
