/*
 * Several writers stamp per-page sequence numbers while a collector resets
 * with a short array.  At the end every page's last stamp must have been
 * seen by the collector (no lost write), and no page that nobody wrote was
 * ever reported (no false report).
 *
 * A write whose fault is resolved just before a resetting scan is reported
 * by that scan, faults again when the store retries, and is reported once
 * more: with either backend, the page is marked when the fault is resolved,
 * not when the store lands.  The test counts such repeats for the pages
 * written once, and does not fail on them: reporting a write twice loses
 * nothing.
 *
 * Page roles, by index: every 8th page is never written (clean), the one
 * before it is written once at the start (cold), the rest are written all
 * the time (hot).  WRITEWATCH_STRESS_CALLS sets the collector's call count.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "host.h"
#include "test.h"

#define PAGES 512
#define WRITERS 3
#define ARRAY_SIZE 16
#define BLOCK 8

enum role { HOT, COLD, CLEAN };

static char *region;
static volatile int stop_writers;
static uint64_t final_stamp[PAGES];
static uint64_t last_seen[PAGES];
static unsigned int reports[PAGES];
static unsigned long false_reports, misordered;

static enum role page_role(size_t index)
{
    if (index % BLOCK == BLOCK - 1) return CLEAN;
    if (index % BLOCK == BLOCK - 2) return COLD;
    return HOT;
}

static int page_owner(size_t index)
{
    return (index / BLOCK) % WRITERS;
}

static uint64_t *stamp_of(size_t index)
{
    return (uint64_t *)(region + index * page);
}

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned int seed = id * 7919 + 1;
    size_t index;

    for (index = 0; index < PAGES; index++)
    {
        if (page_owner(index) != id || page_role(index) != COLD) continue;
        __atomic_store_n(stamp_of(index), 1, __ATOMIC_RELEASE);
        final_stamp[index] = 1;
    }
    while (!__atomic_load_n(&stop_writers, __ATOMIC_ACQUIRE))
    {
        index = rand_r(&seed) % PAGES;
        if (page_owner(index) != id || page_role(index) != HOT) continue;
        __atomic_store_n(stamp_of(index), ++final_stamp[index], __ATOMIC_RELEASE);
    }
    return NULL;
}

/* Records what one call reported; returns how many pages it got. */
static uintptr_t collect(char *start, size_t pages)
{
    void *array[ARRAY_SIZE];
    uintptr_t count = ARRAY_SIZE, i;
    writewatch_status status = get_watch(WRITEWATCH_FLAG_RESET, start, pages * page, array, &count);

    ok(status == 0, "GetWriteWatch failed with %#x\n", (unsigned int)status);
    if (status) return 0;
    for (i = 0; i < count; i++)
    {
        size_t index = ((char *)array[i] - region) / page;

        if ((char *)array[i] < start || (char *)array[i] >= start + pages * page ||
            (i && array[i] <= array[i - 1]))
        {
            misordered++;
            continue;
        }
        reports[index]++;
        if (page_role(index) == CLEAN) false_reports++;
        else last_seen[index] = __atomic_load_n(stamp_of(index), __ATOMIC_ACQUIRE);
    }
    return count;
}

void test_stress_writers_and_collector(void)
{
    const char *env = getenv("WRITEWATCH_STRESS_CALLS");
    unsigned long calls = env ? strtoul(env, NULL, 10) : 100000, call, lost = 0, repeats = 0;
    unsigned int seed = 12345;
    pthread_t threads[WRITERS];
    writewatch_status status;
    size_t index;
    int i;

    region = host_alloc(PAGES * page, PROT_READ | PROT_WRITE, &status);
    ok(region != NULL, "allocation failed with %#x\n", (unsigned int)status);
    if (!region) return;
    memset(final_stamp, 0, sizeof(final_stamp));
    memset(last_seen, 0, sizeof(last_seen));
    memset(reports, 0, sizeof(reports));
    stop_writers = 0;
    for (i = 0; i < WRITERS; i++) pthread_create(&threads[i], NULL, writer, (void *)(intptr_t)i);

    for (call = 0; call < calls; call++)
    {
        size_t first = 0, pages = PAGES;

        /* every fourth call looks at a random sub-range */
        if (call % 4 == 3)
        {
            first = rand_r(&seed) % PAGES;
            pages = 1 + rand_r(&seed) % (PAGES - first);
        }
        collect(region + first * page, pages);
    }

    __atomic_store_n(&stop_writers, 1, __ATOMIC_RELEASE);
    for (i = 0; i < WRITERS; i++) pthread_join(threads[i], NULL);
    while (collect(region, PAGES) == ARRAY_SIZE);

    for (index = 0; index < PAGES; index++)
    {
        if (page_role(index) == COLD)
        {
            if (!reports[index]) lost++;
            else repeats += reports[index] - 1;
        }
        if (page_role(index) == HOT && last_seen[index] != final_stamp[index]) lost++;
        if (page_role(index) == HOT && !final_stamp[index] && reports[index]) false_reports++;
    }
    printf("stress: %lu collector calls, %d writers, array of %d: %lu lost, %lu false, %lu misordered, "
           "%lu in-flight writes reported twice\n", calls, WRITERS, ARRAY_SIZE, lost, false_reports, misordered,
           repeats);
    ok(!lost, "%lu pages lost a write\n", lost);
    ok(!false_reports, "%lu false reports\n", false_reports);
    ok(!misordered, "%lu entries out of order or range\n", misordered);
    host_free(region, PAGES * page);
}
