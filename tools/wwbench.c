/*
 * wwbench: what write watches cost on the native host, for four
 * implementations:
 *
 *   floor     no module: bare userfaultfd WP-async faults, one raw
 *             PAGEMAP_SCAN over the range with room for every region, and
 *             for ResetWriteWatch one walk without an output vector; no lock
 *   batched   upstream Wine's own kernel write watches, inside a section
 *             like Wine's virtual memory section (signals blocked, a mutex
 *             held) for the call; 256
 *             regions a PAGEMAP_SCAN from walk_end, addresses written
 *             straight into the array; ResetWriteWatch one walk without an
 *             output vector
 *   uffd      the module's kernel backend
 *   mprotect  the module's fallback
 *
 * The first three run side by side in one process, each on ranges of its
 * own, in turn within every run, so that the machine's drift falls on all
 * three alike; the fallback runs in a process of its own.  A first call
 * ("cold": the first query of a process, its buffers and the kernel's
 * untouched) runs in a fresh process per sample, which also counts the page
 * faults the call takes.  The parent prints the medians of every round's
 * samples, the ratios with the middle half of the paired ones (this
 * machine's spread), and which figures meet the target: the module at or
 * under the better floor.
 *
 *   tools/wwbench [--quick] [--data FILE]
 *
 * --quick measures fewer and smaller cases; --data also writes the figures
 * as columns for plotting (tools/bench draws the charts).
 */

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "writewatch_private.h"
#include "host.h"
#include "median.h"

#define RUNS 4
#define QUICK_RUNS 3
/* processes per kind, in turn, so that slow spells fall on every kind; in
 * each, the implementations map their ranges in another order, so that
 * where the kernel puts a range's page tables favours none of them */
#define ROUNDS 6
/* first calls: a process per sample */
#define COLD_ROUNDS 9
#define MAX_FIGURES 96
#define MAX_SAMPLES 128
/* the fallback splits a mapping per written run: keep under vm.max_map_count */
#define FALLBACK_MAX_WRITTEN 25000
/* upstream Wine's vector */
#define BATCHED_REGIONS 256

enum implementation { FLOOR, BATCHED, KERNEL, FALLBACK, IMPLEMENTATIONS };

static int quick;
/* the implementations this process measures, in the order of the first run */
static enum implementation measured[IMPLEMENTATIONS];
static int measured_count;

/* the floors' own userfaultfd and pagemap descriptors */
static int floor_uffd = -1, floor_pagemap = -1;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fail(const char *what)
{
    perror(what);
    exit(1);
}

/* Page faults this process took so far that needed no I/O. */
static long minor_faults(void)
{
    struct rusage usage;

    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

static int count_mappings(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    int lines = 0, c;

    if (!maps) return -1;
    while ((c = fgetc(maps)) != EOF) lines += c == '\n';
    fclose(maps);
    return lines;
}

/* The run a sample belongs to: the parent pairs the implementations'
 * samples of one run. */
static int run_id;

/* One sample of a figure, for the parent to gather. */
static void sample(enum implementation impl, const char *figure, double value)
{
    printf("%d\t%d\t%s\t%.4f\n", impl, run_id, figure, value);
}

static void floor_init(void)
{
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };

    floor_uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (floor_uffd < 0 || ioctl(floor_uffd, UFFDIO_API, &api)) fail("userfaultfd");
    if ((floor_pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) fail("pagemap");
}

static int is_floor(enum implementation impl)
{
    return impl == FLOOR || impl == BATCHED;
}

/* The kernel's fastest reset: one write-protecting walk with no output
 * vector (watched ranges hold no huge page, so every kernel takes it). */
static void floor_protect(char *base, size_t size)
{
    struct pm_scan_arg args = { .size = sizeof(args), .flags = PM_SCAN_WP_MATCHING,
                                .start = (uintptr_t)base, .end = (uintptr_t)base + size,
                                .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN };

    if (ioctl(floor_pagemap, PAGEMAP_SCAN, &args) < 0) fail("PAGEMAP_SCAN");
}

/* One PAGEMAP_SCAN over the range with room for every region; returns the
 * number of written pages. */
static size_t floor_scan(char *base, size_t size, int reset)
{
    static struct page_region *regions;
    static size_t capacity;
    struct pm_scan_arg args = { .size = sizeof(args), .start = (uintptr_t)base, .end = (uintptr_t)base + size,
                                .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN };
    size_t pages = 0;
    int i, count;

    if (!regions)
    {
        capacity = 1 << 20;
        if (!(regions = malloc(capacity * sizeof(*regions)))) fail("malloc");
    }
    args.flags = reset ? PM_SCAN_WP_MATCHING : 0;
    args.vec = (uintptr_t)regions;
    args.vec_len = capacity;
    if ((count = ioctl(floor_pagemap, PAGEMAP_SCAN, &args)) < 0) fail("PAGEMAP_SCAN");
    for (i = 0; i < count; i++) pages += (regions[i].end - regions[i].start) / page;
    return pages;
}

/* Upstream Wine's virtual memory section: signals blocked, and its mutex. */
static pthread_mutex_t batched_mutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

static void batched_enter(sigset_t *old)
{
    sigset_t block;

    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, old);
    pthread_mutex_lock(&batched_mutex);
}

static void batched_leave(sigset_t *old)
{
    pthread_mutex_unlock(&batched_mutex);
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* The batched walk, as upstream Wine's NtGetWriteWatch does it; returns
 * the number of written pages. */
static size_t batched_scan(char *base, size_t size, int reset, void **addresses, uintptr_t room)
{
    struct page_region regions[BATCHED_REGIONS];
    struct pm_scan_arg args = { .size = sizeof(args), .start = (uintptr_t)base, .end = (uintptr_t)base + size,
                                .vec = (uintptr_t)regions, .vec_len = BATCHED_REGIONS, .max_pages = room,
                                .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN };
    size_t count = 0;
    uintptr_t address;
    sigset_t old;
    int i, n;

    args.flags = reset ? PM_SCAN_WP_MATCHING : 0;
    batched_enter(&old);
    for (;;)
    {
        if ((n = ioctl(floor_pagemap, PAGEMAP_SCAN, &args)) < 0) fail("PAGEMAP_SCAN");
        for (i = 0; i < n; i++)
            for (address = regions[i].start; address < regions[i].end; address += page)
                addresses[count++] = (void *)address;
        if (n < BATCHED_REGIONS || args.walk_end >= args.end || count == room) break;
        args.start = args.walk_end;
        args.max_pages = room - count;
    }
    batched_leave(&old);
    return count;
}

static char *watch(enum implementation impl, size_t size)
{
    struct uffdio_register reg = { .range = { 0, size }, .mode = UFFDIO_REGISTER_MODE_WP };
    struct uffdio_writeprotect wp = { .range = { 0, size }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
    writewatch_status status;
    char *base;

    if (!is_floor(impl))
    {
        if (!(base = host_alloc(size, PROT_READ | PROT_WRITE, &status))) fail("host_alloc");
        return base;
    }
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) fail("mmap");
    reg.range.start = wp.range.start = (uintptr_t)base;
    madvise(base, size, MADV_NOHUGEPAGE);
    if (ioctl(floor_uffd, UFFDIO_REGISTER, &reg) || ioctl(floor_uffd, UFFDIO_WRITEPROTECT, &wp)) fail("register");
    return base;
}

static void unwatch(enum implementation impl, char *base, size_t size)
{
    if (!is_floor(impl)) host_free(base, size);
    else munmap(base, size);
}

/* GetWriteWatch over the whole range into a large enough array.  The
 * module is called as the floors are, without the host's system call
 * frame around it (Wine sets one up for upstream's code as for ours). */
static size_t collect(enum implementation impl, char *base, size_t size, int reset, void **addresses,
                      uintptr_t room)
{
    uintptr_t count = room;
    uint32_t granularity;

    if (impl == FLOOR) return floor_scan(base, size, reset);
    if (impl == BATCHED) return batched_scan(base, size, reset, addresses, room);
    if (writewatch_get_write_watch(reset ? WRITEWATCH_FLAG_RESET : 0, base, size, addresses, &count, &granularity))
        fail("GetWriteWatch");
    return count;
}

static void reset_all(enum implementation impl, char *base, size_t size)
{
    sigset_t old;

    if (impl == FLOOR) floor_protect(base, size);
    else if (impl == BATCHED)
    {
        batched_enter(&old);
        floor_protect(base, size);
        batched_leave(&old);
    }
    else if (writewatch_reset_write_watch(base, size)) fail("ResetWriteWatch");
}

/* The caller's array, of entries pointers.  It is the caller's, and every
 * implementation gets it present: filled with other than zeros, which a
 * compiler would turn into a calloc that leaves fresh pages untouched (the
 * module's probe, as Windows' ProbeForWrite, touches every page). */
static void **caller_array(size_t entries)
{
    void **array = malloc(entries * sizeof(*array));

    if (!array) fail("malloc");
    memset(array, 0xff, entries * sizeof(*array));
    return array;
}

/* Which pages a round writes: about one in every `every`, a different
 * selection each round; every = EVERY_OTHER writes every other page, the
 * most runs a range can hold. */
#define EVERY_OTHER 0

static int selected(size_t i, size_t every, unsigned int round)
{
    uint32_t hash = (uint32_t)((i + round * 7919u) * 2654435761u);

    if (every == EVERY_OTHER) return i % 2 == round % 2;
    return (hash >> 8) % every == 0;
}

static size_t dirty(char *base, size_t pages, size_t every, unsigned int round)
{
    size_t i, written = 0;

    for (i = 0; i < pages; i++)
    {
        if (!selected(i, every, round)) continue;
        base[i * page + (round & 63)]++;
        written++;
    }
    if (!written)
    {
        base[(pages / 2) * page]++;
        written = 1;
    }
    return written;
}

/* The implementation that goes k-th in run `run`.  Runs go through every
 * order of the three, so that each goes before each other as often as
 * after it, and what the one before leaves in caches and TLBs favours
 * none. */
static enum implementation in_turn(int run, int k)
{
    static const int orders[6][3] = { { 0, 1, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 0, 2, 1 }, { 2, 1, 0 }, { 1, 0, 2 } };

    if (measured_count == 1) return measured[0];
    return measured[orders[run % 6][k]];
}

static int runs(void)
{
    return quick ? QUICK_RUNS : RUNS;
}

/* The process's round: the order in which the implementations map ranges. */
static int process_round;

/* The implementation that goes k-th in the current run: the process's
 * runs go on through the orders where the previous process's stopped. */
static enum implementation in_this_run(int k)
{
    return in_turn(run_id + process_round * runs(), k);
}

/* Ranges of size for each implementation, mapped in this round's order. */
static void watch_all(char **bases, size_t size)
{
    int k;

    for (k = 0; k < measured_count; k++)
    {
        enum implementation impl = in_turn(process_round, k);

        bases[impl] = watch(impl, size);
    }
}

static void bench_first_write(void)
{
    size_t pages = quick ? 4096 : 16384, i;
    double start;
    int run, k;

    for (run = 0; run < runs(); run++)
    {
        run_id++;
        for (k = 0; k < measured_count; k++)
        {
            enum implementation impl = in_this_run(k);
            char *base = watch(impl, pages * page);

            start = now();
            for (i = 0; i < pages; i++) base[i * page] = 1;
            sample(impl, "first write to an unpopulated page (us)", (now() - start) / pages * 1e6);
            reset_all(impl, base, pages * page);
            start = now();
            for (i = 0; i < pages; i++) base[i * page] = 2;
            sample(impl, "first write after reset (us)", (now() - start) / pages * 1e6);
            unwatch(impl, base, pages * page);
        }
    }
}

/* Whether the fallback can take a case: it splits a mapping per run. */
static int fallback_can(size_t pages, size_t every)
{
    return every != EVERY_OTHER && pages / every <= FALLBACK_MAX_WRITTEN;
}

static void bench_range(size_t size, size_t every, const char *label)
{
    size_t pages = size / page, written;
    char *bases[IMPLEMENTATIONS], name[128];
    void **addresses;
    double start;
    int run, k;

    if (measured[0] == FALLBACK && !fallback_can(pages, every)) return;
    addresses = caller_array(pages);
    watch_all(bases, size);
    for (run = 0; run < runs(); run++)
    {
        run_id++;
        for (k = 0; k < measured_count; k++)
        {
            enum implementation impl = in_this_run(k);
            char *base = bases[impl];

            written = dirty(base, pages, every, run);
            start = now();
            if (collect(impl, base, size, 0, addresses, pages) != written) fail("wrong page count");
            snprintf(name, sizeof(name), "%s GetWriteWatch (ms)", label);
            sample(impl, name, (now() - start) * 1e3);
            start = now();
            collect(impl, base, size, 1, addresses, pages);
            snprintf(name, sizeof(name), "%s GetWriteWatch+reset (ms)", label);
            sample(impl, name, (now() - start) * 1e3);

            dirty(base, pages, every, run + 100);
            start = now();
            reset_all(impl, base, size);
            snprintf(name, sizeof(name), "%s ResetWriteWatch (ms)", label);
            sample(impl, name, (now() - start) * 1e3);
        }
    }
    for (k = 0; k < measured_count; k++) unwatch(measured[k], bases[measured[k]], size);
    free(addresses);
}

/* A garbage collector's frame on a populated heap: write about one page in
 * `every`, collect with reset, read every reported page. */
static void bench_frames(size_t size, size_t every, const char *label)
{
    size_t pages = size / page, i, count;
    int frames = quick ? 5 : 10, frame, k;
    char *bases[IMPLEMENTATIONS], name[128];
    volatile char sum = 0;
    void **addresses;
    double start;

    addresses = caller_array(pages);
    snprintf(name, sizeof(name), "frame, %s (ms)", label);
    watch_all(bases, size);
    for (k = 0; k < measured_count; k++)
    {
        for (i = 0; i < pages; i++) bases[measured[k]][i * page] = 1;
        reset_all(measured[k], bases[measured[k]], size);
    }
    for (frame = 0; frame < frames; frame++)
    {
        run_id++;
        for (k = 0; k < measured_count; k++)
        {
            enum implementation impl = in_this_run(k);
            char *base = bases[impl];

            start = now();
            dirty(base, pages, every, frame);
            count = collect(impl, base, size, 1, addresses, pages);
            /* the floor returns ranges, not addresses: it reads the pages it wrote */
            for (i = 0; i < count && impl != FLOOR; i++) sum += *(char *)addresses[i];
            for (i = 0; i < count && impl == FLOOR; i++) sum += base[(i * every % pages) * page];
            sample(impl, name, (now() - start) * 1e3);
        }
    }
    for (k = 0; k < measured_count; k++) unwatch(measured[k], bases[measured[k]], size);
    free(addresses);
}

static void bench_mappings(void)
{
    size_t size = (size_t)1 << 30, pages = size / page;
    int k;

    for (k = 0; k < measured_count; k++)
    {
        char *base = watch(measured[k], size);
        int before = count_mappings();

        dirty(base, pages, 100, 0);
        sample(measured[k], "mappings added by writing 1% of 1 GiB", count_mappings() - before);
        unwatch(measured[k], base, size);
    }
}

static const struct { size_t size; const char *name; } sizes[] =
{
    { (size_t)4 << 20, "4 MiB" }, { (size_t)64 << 20, "64 MiB" }, { (size_t)1 << 30, "1 GiB" },
    { (size_t)4 << 30, "4 GiB" },
};
static const struct { size_t every; const char *name; } fractions[] =
{
    { 10000, "0.01%" }, { 100, "1%" }, { 2, "50%" }, { EVERY_OTHER, "every other page" },
};
/* first calls: few runs, runs of a few pages, the most runs */
static const struct { size_t size; size_t every; const char *name; } cold_cases[] =
{
    { (size_t)64 << 20, 100, "64 MiB 1%" }, { (size_t)1 << 30, 100, "1 GiB 1%" },
    { (size_t)1 << 30, EVERY_OTHER, "1 GiB every other page" },
};
#define COLD_CASES (sizeof(cold_cases) / sizeof(cold_cases[0]))

static void bench_all(void)
{
    size_t s, f, count = sizeof(sizes) / sizeof(sizes[0]) - quick;
    char label[64];

    bench_first_write();
    for (s = 0; s < count; s++)
    {
        for (f = 0; f < sizeof(fractions) / sizeof(fractions[0]); f++)
        {
            if (quick && f >= 2 && s >= 2) continue;
            snprintf(label, sizeof(label), "%s %s", sizes[s].name, fractions[f].name);
            bench_range(sizes[s].size, fractions[f].every, label);
        }
    }
    bench_frames((size_t)256 << 20, 20, "256 MiB 5%");
    bench_frames((size_t)256 << 20, 1000, "256 MiB 0.1%");
    bench_frames((size_t)1 << 30, 10000, "1 GiB 0.01%");
    bench_mappings();
}

/* The first query of a fresh process, and the page faults it takes: what
 * it touches for the first time, such as stack for its buffer. */
static void bench_cold(enum implementation impl, size_t index)
{
    size_t size = cold_cases[index].size, pages = size / page, written;
    char name[128], *base = watch(impl, size);
    void **addresses = caller_array(pages);
    long faults;
    double start, elapsed;

    written = dirty(base, pages, cold_cases[index].every, 0);
    faults = minor_faults();
    start = now();
    if (collect(impl, base, size, 0, addresses, pages) != written) fail("wrong page count");
    elapsed = now() - start;
    faults = minor_faults() - faults;
    snprintf(name, sizeof(name), "%s GetWriteWatch, first call (ms)", cold_cases[index].name);
    sample(impl, name, elapsed * 1e3);
    snprintf(name, sizeof(name), "page faults in that first call, %s", cold_cases[index].name);
    sample(impl, name, faults);
}

/* WWBENCH_CHILD is "side ROUND", "fallback" or "cold IMPL CASE ROUND". */
static int child(const char *kind)
{
    int impl, index;

    page = sysconf(_SC_PAGESIZE);
    if (sscanf(kind, "cold %d %d %d", &impl, &index, &run_id) == 3)
    {
        if (is_floor(impl)) floor_init();
        else host_init();
        bench_cold(impl, index);
        return 0;
    }
    host_init();
    sscanf(kind, "side %d", &process_round);
    if (!strcmp(kind, "fallback"))
    {
        measured[measured_count++] = FALLBACK;
    }
    else
    {
        floor_init();
        measured[measured_count++] = FLOOR;
        measured[measured_count++] = BATCHED;
        measured[measured_count++] = KERNEL;
    }
    bench_all();
    return 0;
}

/* A figure's samples, by implementation; key pairs the samples of one
 * run (or, for first calls, of one round). */
struct samples
{
    int count;
    int keys[MAX_SAMPLES];
    double values[MAX_SAMPLES];
};

/* The paired ratios of a figure: their median and middle half, the spread
 * of this machine from run to run. */
struct ratio
{
    double median, low, high;
};

struct figures
{
    int count;
    char names[MAX_FIGURES][96];
    struct samples samples[IMPLEMENTATIONS][MAX_FIGURES];
    double medians[IMPLEMENTATIONS][MAX_FIGURES];
    /* uffd's sample divided by the floor's, and by the batched walk's, of
     * the same run: drift between runs cancels out */
    struct ratio ratios[2][MAX_FIGURES];
};

static int figure_index(struct figures *figures, const char *name)
{
    int i;

    for (i = 0; i < figures->count; i++)
        if (!strcmp(figures->names[i], name)) return i;
    if (figures->count == MAX_FIGURES)
    {
        fprintf(stderr, "wwbench: too many figures\n");
        exit(1);
    }
    snprintf(figures->names[i], sizeof(figures->names[i]), "%.95s", name);
    return figures->count++;
}

/* One child process; its samples join the figures, their runs keyed
 * apart from other processes' by the round. */
static void run_child(const char *self, const char *kind, const char *backend, int round, struct figures *figures)
{
    char command[512], line[256], name[128];
    struct samples *samples;
    int impl, run, i;
    double value;
    FILE *pipe;

    snprintf(command, sizeof(command), "WRITEWATCH_BACKEND=%s WWBENCH_CHILD='%s' %s%s", backend, kind, self,
             quick ? " --quick" : "");
    if (!(pipe = popen(command, "r"))) fail("popen");
    while (fgets(line, sizeof(line), pipe))
    {
        if (sscanf(line, "%d\t%d\t%127[^\t]\t%lf", &impl, &run, name, &value) != 4) continue;
        if (impl < 0 || impl >= IMPLEMENTATIONS) continue;
        i = figure_index(figures, name);
        samples = &figures->samples[impl][i];
        if (samples->count == MAX_SAMPLES) continue;
        samples->keys[samples->count] = round * 1000 + run;
        samples->values[samples->count++] = value;
    }
    if (pclose(pipe))
    {
        fprintf(stderr, "wwbench: the %s run failed\n", kind);
        exit(1);
    }
}

static double median_of(const struct samples *samples)
{
    double values[MAX_SAMPLES];

    if (!samples->count) return -1;
    memcpy(values, samples->values, samples->count * sizeof(*values));
    return median(values, samples->count);
}

/* Ours' samples divided by theirs of the same run. */
static struct ratio paired_ratio(const struct samples *ours, const struct samples *theirs)
{
    struct ratio ratio = { -1, -1, -1 };
    double ratios[MAX_SAMPLES];
    int i, j, count = 0;

    for (i = 0; i < ours->count; i++)
        for (j = 0; j < theirs->count; j++)
            if (ours->keys[i] == theirs->keys[j] && theirs->values[j] > 0)
                ratios[count++] = ours->values[i] / theirs->values[j];
    if (!count) return ratio;
    ratio.median = median(ratios, count);
    /* median() left them sorted */
    ratio.low = sorted_quantile(ratios, count, 0.25);
    ratio.high = sorted_quantile(ratios, count, 0.75);
    return ratio;
}

static void print_value(double value)
{
    if (value < 0) printf(" | n/a");
    else printf(" | %.3f", value);
}

static void print_ratio(double a, double b)
{
    if (a < 0 || b <= 0) printf(" | n/a");
    else printf(" | %.2fx", a / b);
}

static void print_paired(double ratio)
{
    if (ratio < 0) printf(" | n/a");
    else printf(" | %.2fx", ratio);
}

/* Machines of one kind differ about 20x in what faults and page tables
 * cost: every report starts with this one's. */
static void print_fault_cost(const struct figures *figures)
{
    int i;

    for (i = 0; i < figures->count; i++)
    {
        if (strcmp(figures->names[i], "first write after reset (us)")) continue;
        printf("Per-fault cost of this machine: %.2f us for the first write to a write-protected page "
               "(bare userfaultfd WP-async), %.2f us with mprotect and a signal.\n\n", figures->medians[FLOOR][i],
               figures->medians[FALLBACK][i]);
    }
}

/* The figures with a target: the module's queries and resets, at or under
 * the better of the two floors. */
static int has_target(const char *name)
{
    return strstr(name, "GetWriteWatch") || strstr(name, "ResetWriteWatch") || strstr(name, "frame,");
}

/* At or under the better floor: at or under each of them. */
static const struct ratio *against_better_floor(const struct figures *figures, int i)
{
    const struct ratio *floor = &figures->ratios[0][i], *batched = &figures->ratios[1][i];

    return floor->median > batched->median ? floor : batched;
}

/* A miss within the machine's spread: 1.00x lies in the middle half. */
static int within_spread(const struct ratio *ratio)
{
    return ratio->low <= 1.0;
}

/* figure names end with "(unit)": the size and dirty fraction come first */
static void write_data(const char *path, const struct figures *figures)
{
    FILE *file = fopen(path, "w");
    int i;

    if (!file) fail(path);
    fprintf(file, "# size_mib dirty_percent floor batched uffd mprotect  (GetWriteWatch+reset, ms)\n");
    for (i = 0; i < figures->count; i++)
    {
        double size, percent;
        char unit[8];

        if (!strstr(figures->names[i], "GetWriteWatch+reset")) continue;
        if (sscanf(figures->names[i], "%lf %3s %lf%%", &size, unit, &percent) != 3) continue;
        if (!strcmp(unit, "GiB")) size *= 1024;
        fprintf(file, "%g %g %g %g %g %g\n", size, percent, figures->medians[FLOOR][i], figures->medians[BATCHED][i],
                figures->medians[KERNEL][i], figures->medians[FALLBACK][i] < 0 ? NAN : figures->medians[FALLBACK][i]);
    }
    fclose(file);
}

static void print_report(const struct figures *figures)
{
    int i, targets = 0, met = 0, spread = 0, worst = -1;

    print_fault_cost(figures);
    printf("Times: medians of %d samples per figure and implementation (%d processes of %d runs; first calls: "
           "%d processes each).  floor, batched and uffd run side by side in one process, in turn within every "
           "run; mprotect in a process of its own; a first call in a fresh process.  floor: bare userfaultfd "
           "WP-async faults and one raw PAGEMAP_SCAN with room for every region (for ResetWriteWatch one without "
           "an output vector), no lock.  batched: upstream Wine's walk inside a section like Wine's (signals "
           "blocked, a mutex held) for the call, 256 "
           "regions a PAGEMAP_SCAN from walk_end, addresses written into the array.  uffd / floor and uffd / "
           "batched: medians of the ratios of samples of the same run, so that drift between runs cancels out, "
           "and for a miss the middle half of those ratios, this machine's spread.  "
           "Target: uffd at or under the better floor, that is under both.\n\n", ROUNDS * runs(), ROUNDS,
           runs(), quick ? ROUNDS : COLD_ROUNDS);
    printf("| figure | floor | batched | uffd | mprotect | uffd / floor | uffd / batched | mprotect / uffd | "
           "uffd / better floor |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (i = 0; i < figures->count; i++)
    {
        double ours = figures->medians[KERNEL][i];

        printf("| %s", figures->names[i]);
        print_value(figures->medians[FLOOR][i]);
        print_value(figures->medians[BATCHED][i]);
        print_value(ours);
        print_value(figures->medians[FALLBACK][i]);
        print_paired(figures->ratios[0][i].median);
        print_paired(figures->ratios[1][i].median);
        print_ratio(figures->medians[FALLBACK][i], ours);
        if (!has_target(figures->names[i])) printf(" |  |\n");
        else
        {
            const struct ratio *ratio = against_better_floor(figures, i);

            targets++;
            if (worst < 0 || ratio->median > against_better_floor(figures, worst)->median) worst = i;
            if (ratio->median <= 1.0)
            {
                met++;
                printf(" | %.2fx met |\n", ratio->median);
                continue;
            }
            spread += within_spread(ratio);
            printf(" | %.2fx missed (middle half %.2fx to %.2fx) |\n", ratio->median, ratio->low, ratio->high);
        }
    }
    if (worst >= 0)
        printf("\n%d of %d figures at or under the better floor; %d of the %d missed reach 1.00x within the middle "
               "half of their ratios; the worst: %s, %.2fx.\n", met, targets, spread, targets - met,
               figures->names[worst], against_better_floor(figures, worst)->median);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *child_kind = getenv("WWBENCH_CHILD");
    static struct figures figures;
    enum implementation impl;
    char kind[64];
    int i, round;
    size_t c;

    for (i = 1; i < argc; i++)
    {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else
        {
            fprintf(stderr, "usage: %s [--quick] [--data FILE]\n", argv[0]);
            return 2;
        }
    }
    if (child_kind) return child(child_kind);

    for (round = 0; round < ROUNDS; round++)
    {
        snprintf(kind, sizeof(kind), "side %d", round);
        run_child(argv[0], kind, "uffd", round, &figures);
        run_child(argv[0], "fallback", "mprotect", round, &figures);
    }
    for (round = 0; round < (quick ? ROUNDS : COLD_ROUNDS); round++)
    {
        for (c = 0; c < COLD_CASES; c++)
        {
            for (impl = FLOOR; impl <= KERNEL; impl++)
            {
                snprintf(kind, sizeof(kind), "cold %d %zu %d", (impl + round) % (KERNEL + 1), c, round);
                run_child(argv[0], kind, "uffd", ROUNDS + round, &figures);
            }
        }
    }
    for (i = 0; i < figures.count; i++)
    {
        for (impl = 0; impl < IMPLEMENTATIONS; impl++) figures.medians[impl][i] = median_of(&figures.samples[impl][i]);
        figures.ratios[0][i] = paired_ratio(&figures.samples[KERNEL][i], &figures.samples[FLOOR][i]);
        figures.ratios[1][i] = paired_ratio(&figures.samples[KERNEL][i], &figures.samples[BATCHED][i]);
    }
    print_report(&figures);
    if (data) write_data(data, &figures);
    return 0;
}
