/*
 * Stop the world, as garbage collectors do.  Writers stamp per-page
 * sequence numbers into a watched heap; a collector resets with a short
 * array that lives in another watched allocation; a churner changes the
 * protection of the heap's last pages, decommits and recommits them, and
 * releases and re-allocates a second allocation the collector also
 * queries; a suspender stops the other threads with the host's suspend
 * signal, as Wine's SuspendThread and Boehm GC do, and changes the address
 * space while they are stopped.
 *
 * Nothing may hang: every wait is bounded, and a thread that makes no
 * progress fails the test (19-22 in tests/semantics.md).  At the end every page's last stamp must have
 * been seen by the collector (no lost write), no page nobody wrote may have
 * been reported, and every status must be one Windows returns.
 *
 * A write whose fault is resolved just before a resetting scan is reported
 * by that scan, faults again when the store retries, and is reported once
 * more: with either backend, the page is marked when the fault is resolved,
 * not when the store lands.  The test counts such repeats for the pages
 * written once, and does not fail on them: reporting a write twice loses
 * nothing.
 *
 * Page roles, by index: the heap's last CHURN_PAGES are the churner's and
 * nobody writes them; of the others every 8th page is never written
 * (clean), the one before it is written once at the start (cold), the rest
 * are written all the time (hot).  WRITEWATCH_STRESS_CALLS sets the
 * collector's call count.
 */

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include "host.h"
#include "test.h"

#define PAGES 512
#define CHURN_PAGES 64
#define WRITERS 3
#define ARRAY_SIZE 16
#define BLOCK 8
#define TRANSIENT_PAGES 16
/* how long a thread may make no progress, or take to stop, before the test
 * calls it a hang (valgrind runs one thread at a time, slowly) */
#define HANG_SECONDS 60

enum role { HOT, COLD, CLEAN, CHURN };

/* thread slots: writers, then the collector and the churner */
enum { COLLECTOR = WRITERS, CHURNER, THREADS };

static char *region, *array_home;
static char *volatile transient;
static volatile int stop_writers, stop_churner, stop_helpers;
static uint64_t final_stamp[PAGES];
static uint64_t last_seen[PAGES];
static unsigned int reports[PAGES];
static unsigned long false_reports, misordered, bad_statuses, suspensions, churns;
static unsigned long progress[THREADS];
static pthread_t threads[THREADS];
static int held[THREADS], stopped[THREADS], started;
static __thread int my_slot = -1;

static enum role page_role(size_t index)
{
    if (index >= PAGES - CHURN_PAGES) return CHURN;
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

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pause_briefly(void)
{
    struct timespec ts = { 0, 50000 };

    nanosleep(&ts, NULL);
}

/* Waits, bounded, until *flag == value; returns 0 on a hang. */
static int wait_for(int *flag, int value)
{
    double deadline = now() + HANG_SECONDS;

    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != value)
    {
        if (now() > deadline) return 0;
        pause_briefly();
    }
    return 1;
}

/* A thread takes its slot before anyone may stop it. */
static void take_slot(int slot)
{
    my_slot = slot;
    __atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
}

/* The host's suspension: the thread waits in the handler until resumed. */
static void suspend_handler(int sig)
{
    int slot = my_slot, err = errno;

    (void)sig;
    if (slot < 0) return;
    __atomic_store_n(&stopped[slot], 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&held[slot], __ATOMIC_ACQUIRE)) pause_briefly();
    __atomic_store_n(&stopped[slot], 0, __ATOMIC_RELEASE);
    errno = err;
}

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned int seed = id * 7919 + 1;
    size_t index;

    take_slot(id);
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
        __atomic_add_fetch(&progress[id], 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Records what one call reported; returns how many pages it got. */
static uintptr_t collect(char *start, size_t pages)
{
    void **array = (void **)array_home;
    uintptr_t count = ARRAY_SIZE, i;
    writewatch_status status = get_watch(WRITEWATCH_FLAG_RESET, start, pages * page, array, &count);

    if (status)
    {
        bad_statuses++;
        return 0;
    }
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
        if (page_role(index) == CLEAN || page_role(index) == CHURN) false_reports++;
        else last_seen[index] = __atomic_load_n(stamp_of(index), __ATOMIC_ACQUIRE);
    }
    return count;
}

/* A released allocation is no longer watched: Windows says so, and says
 * nothing else. */
static void query_transient(void)
{
    void *array[ARRAY_SIZE];
    uintptr_t count = ARRAY_SIZE;
    writewatch_status status = get_watch(0, transient, TRANSIENT_PAGES * page, array, &count);

    if (status && status != WRITEWATCH_STATUS_INVALID_PARAMETER) bad_statuses++;
}

static void *churner(void *arg)
{
    char *churn = region + (PAGES - CHURN_PAGES) * page;
    writewatch_status status;
    unsigned int seed = 99;

    (void)arg;
    take_slot(CHURNER);
    while (!__atomic_load_n(&stop_churner, __ATOMIC_ACQUIRE))
    {
        size_t first = rand_r(&seed) % CHURN_PAGES, pages = 1 + rand_r(&seed) % (CHURN_PAGES - first);
        char *old;

        host_protect(churn + first * page, pages * page, rand_r(&seed) % 2 ? PROT_READ : PROT_READ | PROT_WRITE);
        host_decommit(churn + first * page, pages * page);
        host_commit(churn + first * page, pages * page, PROT_READ | PROT_WRITE);
        old = transient;
        transient = host_alloc(TRANSIENT_PAGES * page, PROT_READ | PROT_WRITE, &status);
        host_free(old, TRANSIENT_PAGES * page);
        __atomic_add_fetch(&churns, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&progress[CHURNER], 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *short_lived(void *arg)
{
    uintptr_t count = ARRAY_SIZE;
    void *array[ARRAY_SIZE];

    (void)arg;
    get_watch(0, region, PAGES * page, array, &count);
    return NULL;
}

/* Stops every other thread, works on the address space while they are
 * stopped, and resumes them. */
static int stop_the_world(void)
{
    void *array[ARRAY_SIZE];
    uintptr_t count = ARRAY_SIZE;
    pthread_t thread;
    int slot, done = 1;

    for (slot = 0; slot < THREADS; slot++)
    {
        __atomic_store_n(&held[slot], 1, __ATOMIC_RELEASE);
        pthread_kill(threads[slot], HOST_SUSPEND_SIGNAL);
        if (!wait_for(&stopped[slot], 1)) done = 0;
    }
    if (done)
    {
        /* a stopped thread holds no lock: none of this may wait for one */
        host_protect(region + (PAGES - CHURN_PAGES) * page, page, PROT_READ | PROT_WRITE);
        if (get_watch(0, region, PAGES * page, array, &count)) bad_statuses++;
        pthread_create(&thread, NULL, short_lived, NULL);
        pthread_join(thread, NULL);
        __atomic_add_fetch(&suspensions, 1, __ATOMIC_RELEASE);
    }
    for (slot = 0; slot < THREADS; slot++)
    {
        __atomic_store_n(&held[slot], 0, __ATOMIC_RELEASE);
        if (!wait_for(&stopped[slot], 0)) done = 0;
    }
    return done;
}

static void *suspender(void *arg)
{
    (void)arg;
    if (!wait_for(&started, THREADS)) return NULL;
    while (!__atomic_load_n(&stop_helpers, __ATOMIC_ACQUIRE))
    {
        if (!stop_the_world())
        {
            ok(0, "a thread did not stop or resume within %d s\n", HANG_SECONDS);
            abort();
        }
        /* the world runs a while between stops */
        usleep(1000);
    }
    return NULL;
}

/* Fails, and ends the process, when a thread made no progress for long. */
static void *watchdog(void *arg)
{
    unsigned long last[THREADS] = { 0 };
    double since[THREADS];
    int slot;

    (void)arg;
    for (slot = 0; slot < THREADS; slot++) since[slot] = now();
    while (!__atomic_load_n(&stop_helpers, __ATOMIC_ACQUIRE))
    {
        for (slot = 0; slot < THREADS; slot++)
        {
            unsigned long value = __atomic_load_n(&progress[slot], __ATOMIC_RELAXED);

            if (value != last[slot])
            {
                last[slot] = value;
                since[slot] = now();
            }
            else if (now() - since[slot] > HANG_SECONDS)
            {
                ok(0, "thread %d made no progress for %d s\n", slot, HANG_SECONDS);
                printf("0 passed, 1 failed\n");
                fflush(stdout);
                _exit(1);
            }
        }
        usleep(100000);
    }
    return NULL;
}

void test_stress_stop_the_world(void)
{
    const char *env = getenv("WRITEWATCH_STRESS_CALLS");
    unsigned long calls = env ? strtoul(env, NULL, 10) : 100000, call, lost = 0, repeats = 0;
    unsigned int seed = 12345;
    pthread_t helpers[2];
    struct sigaction action;
    writewatch_status status;
    double start;
    size_t index;
    int i;

    memset(&action, 0, sizeof(action));
    action.sa_handler = suspend_handler;
    sigemptyset(&action.sa_mask);
    sigaction(HOST_SUSPEND_SIGNAL, &action, NULL);
    region = host_alloc(PAGES * page, PROT_READ | PROT_WRITE, &status);
    array_home = host_alloc(page, PROT_READ | PROT_WRITE, &status);
    transient = host_alloc(TRANSIENT_PAGES * page, PROT_READ | PROT_WRITE, &status);
    ok(region && array_home && transient, "allocation failed with %#x\n", (unsigned int)status);
    if (!region || !array_home || !transient) return;
    memset(final_stamp, 0, sizeof(final_stamp));
    memset(last_seen, 0, sizeof(last_seen));
    memset(reports, 0, sizeof(reports));
    stop_writers = stop_churner = stop_helpers = started = 0;
    for (i = 0; i < WRITERS; i++) pthread_create(&threads[i], NULL, writer, (void *)(intptr_t)i);
    threads[COLLECTOR] = pthread_self();
    take_slot(COLLECTOR);
    pthread_create(&threads[CHURNER], NULL, churner, NULL);
    pthread_create(&helpers[0], NULL, suspender, NULL);
    pthread_create(&helpers[1], NULL, watchdog, NULL);

    start = now();
    /* at least one suspension and one churn happen, however slowly the
     * threads run (valgrind): the suspender ends the run if one hangs */
    for (call = 0; call < calls || !__atomic_load_n(&suspensions, __ATOMIC_ACQUIRE) ||
                   !__atomic_load_n(&churns, __ATOMIC_ACQUIRE); call++)
    {
        size_t first = 0, pages = PAGES;

        /* every fourth call looks at a random sub-range */
        if (call % 4 == 3)
        {
            first = rand_r(&seed) % PAGES;
            pages = 1 + rand_r(&seed) % (PAGES - first);
        }
        collect(region + first * page, pages);
        if (call % 16 == 5) query_transient();
        if (call % 64 == 9 && writewatch_reset_write_watch(region + (PAGES - CHURN_PAGES) * page, CHURN_PAGES * page))
            bad_statuses++;
        __atomic_add_fetch(&progress[COLLECTOR], 1, __ATOMIC_RELAXED);
    }

    /* the suspender first: it stops the others while they run */
    __atomic_store_n(&stop_helpers, 1, __ATOMIC_RELEASE);
    pthread_join(helpers[0], NULL);
    pthread_join(helpers[1], NULL);
    my_slot = -1;
    __atomic_store_n(&stop_churner, 1, __ATOMIC_RELEASE);
    pthread_join(threads[CHURNER], NULL);
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
    printf("stress: %lu collector calls in %.1f s, %d writers, array of %d, %lu suspensions, %lu churns: "
           "%lu lost, %lu false, %lu misordered, %lu bad statuses, %lu in-flight writes reported twice\n",
           call, now() - start, WRITERS, ARRAY_SIZE, suspensions, churns, lost, false_reports, misordered,
           bad_statuses, repeats);
    ok(!lost, "%lu pages lost a write\n", lost);
    ok(!false_reports, "%lu false reports\n", false_reports);
    ok(!misordered, "%lu entries out of order or range\n", misordered);
    ok(!bad_statuses, "%lu statuses Windows does not return\n", bad_statuses);
    ok(suspensions > 0 && churns > 0, "%lu suspensions, %lu churns\n", suspensions, churns);
    host_free(transient, TRANSIENT_PAGES * page);
    host_free(array_home, page);
    host_free(region, PAGES * page);
}
