/*
 * wwbench: what write watches cost on the native host, for the module's
 * kernel backend, its fallback, and two floors with no module code: the
 * kernel floor (a bare userfaultfd WP-async fault per page and one raw
 * PAGEMAP_SCAN over the range with room for every region) and the batched
 * walk (upstream Wine's own kernel write watches: a 256-region vector
 * restarting at walk_end, addresses written straight into the caller's
 * array, signals blocked for the call).  Each implementation runs in a
 * process of its own; the parent prints medians side by side with the
 * ratios.
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
#include <sys/syscall.h>

#include "writewatch_private.h"
#include "host.h"
#include "median.h"

#define RUNS 5
/* each implementation's process runs this often, the three in turn, so
 * that the machine's drift falls on all of them alike */
#define ROUNDS 3
#define MAX_FIGURES 128
/* the fallback splits a mapping per written run: keep under vm.max_map_count */
#define FALLBACK_MAX_WRITTEN 25000

enum implementation { FLOOR, BATCHED, KERNEL, FALLBACK, IMPLEMENTATIONS };
static const char * const implementation_names[] = { "floor", "batched", "uffd", "mprotect" };

static int quick;
static enum implementation current;

/* the floor's own userfaultfd and pagemap descriptors */
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

static int count_mappings(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    int lines = 0, c;

    if (!maps) return -1;
    while ((c = fgetc(maps)) != EOF) lines += c == '\n';
    fclose(maps);
    return lines;
}

static void floor_init(void)
{
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };

    floor_uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (floor_uffd < 0 || ioctl(floor_uffd, UFFDIO_API, &api)) fail("userfaultfd");
    if ((floor_pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) fail("pagemap");
}

/* The kernel's fastest reset: one write-protecting walk with no output
 * vector (watched ranges hold no huge page, so every kernel takes it). */
static void floor_protect(char *base, size_t size)
{
    struct pm_scan_arg args = { .size = sizeof(args), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
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
    args.flags = reset ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0;
    args.vec = (uintptr_t)regions;
    args.vec_len = capacity;
    if ((count = ioctl(floor_pagemap, PAGEMAP_SCAN, &args)) < 0) fail("PAGEMAP_SCAN");
    for (i = 0; i < count; i++) pages += (regions[i].end - regions[i].start) / page;
    return pages;
}

/* The floors run on bare userfaultfd, without the module. */
static int is_floor(void)
{
    return current == FLOOR || current == BATCHED;
}

/* The batched walk: upstream Wine's algorithm, under a signal mask as its
 * virtual memory section is; returns the number of written pages. */
static size_t batched_scan(char *base, size_t size, int reset, void **addresses, uintptr_t room)
{
    struct page_region regions[256];
    struct pm_scan_arg args = { .size = sizeof(args), .start = (uintptr_t)base, .end = (uintptr_t)base + size,
                                .vec = (uintptr_t)regions, .vec_len = 256, .max_pages = room,
                                .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN };
    sigset_t block, old;
    size_t count = 0;
    uintptr_t address;
    int i, n;

    args.flags = reset ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (;;)
    {
        if ((n = ioctl(floor_pagemap, PAGEMAP_SCAN, &args)) < 0) fail("PAGEMAP_SCAN");
        for (i = 0; i < n; i++)
            for (address = regions[i].start; address < regions[i].end; address += page)
                addresses[count++] = (void *)address;
        if (n < 256 || args.walk_end >= args.end || count == room) break;
        args.start = args.walk_end;
        args.max_pages = room - count;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return count;
}

static char *watch(size_t size)
{
    writewatch_status status;
    char *base;

    if (!is_floor())
    {
        if (!(base = host_alloc(size, PROT_READ | PROT_WRITE, &status))) fail("host_alloc");
        return base;
    }
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) fail("mmap");
    {
        struct uffdio_register reg = { .range = { (uintptr_t)base, size }, .mode = UFFDIO_REGISTER_MODE_WP };
        struct uffdio_writeprotect wp = { .range = { (uintptr_t)base, size }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };

        madvise(base, size, MADV_NOHUGEPAGE);
        if (ioctl(floor_uffd, UFFDIO_REGISTER, &reg) || ioctl(floor_uffd, UFFDIO_WRITEPROTECT, &wp))
            fail("register");
    }
    return base;
}

static void unwatch(char *base, size_t size)
{
    if (!is_floor()) host_free(base, size);
    else munmap(base, size);
}

/* GetWriteWatch over the whole range into a large enough array. */
static size_t collect(char *base, size_t size, int reset, void **addresses, uintptr_t room)
{
    uintptr_t count = room;

    if (current == FLOOR) return floor_scan(base, size, reset);
    if (current == BATCHED) return batched_scan(base, size, reset, addresses, room);
    if (get_watch(reset ? WRITEWATCH_FLAG_RESET : 0, base, size, addresses, &count)) fail("GetWriteWatch");
    return count;
}

static void reset_all(char *base, size_t size)
{
    if (is_floor()) floor_protect(base, size);
    else if (writewatch_reset_write_watch(base, size)) fail("ResetWriteWatch");
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

static void report(const char *name, double value)
{
    printf("%s %.4f\n", name, value);
}

static void bench_first_write(void)
{
    size_t pages = quick ? 4096 : 16384, i;
    double fresh[RUNS], again[RUNS], start;
    int run;

    for (run = 0; run < RUNS; run++)
    {
        char *base = watch(pages * page);

        start = now();
        for (i = 0; i < pages; i++) base[i * page] = 1;
        fresh[run] = (now() - start) / pages * 1e6;
        reset_all(base, pages * page);
        start = now();
        for (i = 0; i < pages; i++) base[i * page] = 2;
        again[run] = (now() - start) / pages * 1e6;
        unwatch(base, pages * page);
    }
    report("first write to an unpopulated page (us)", median(fresh, RUNS));
    report("first write after reset (us)", median(again, RUNS));
}

static void report_range(const char *label, double *get, double *get_reset, double *reset, int runs)
{
    char name[128];

    snprintf(name, sizeof(name), "%s GetWriteWatch (ms)", label);
    report(name, median(get, runs));
    snprintf(name, sizeof(name), "%s GetWriteWatch+reset (ms)", label);
    report(name, median(get_reset, runs));
    snprintf(name, sizeof(name), "%s ResetWriteWatch (ms)", label);
    report(name, median(reset, runs));
}

static void bench_range(size_t size, size_t every, const char *label)
{
    size_t pages = size / page, written = 0;
    double get[RUNS], get_reset[RUNS], reset[RUNS], start;
    void **addresses;
    char *base;
    int run;

    if (current == FALLBACK && (every == EVERY_OTHER || pages / every > FALLBACK_MAX_WRITTEN))
    {
        get[0] = get_reset[0] = reset[0] = -1;
        report_range(label, get, get_reset, reset, 1);
        if (every == EVERY_OTHER) printf("%s GetWriteWatch, first call (ms) -1\n", label);
        return;
    }
    if (!(addresses = malloc(pages * sizeof(*addresses)))) fail("malloc");
    base = watch(size);
    for (run = 0; run < RUNS; run++)
    {
        written = dirty(base, pages, every, run);
        start = now();
        if (collect(base, size, 0, addresses, pages) != written) fail("wrong page count");
        get[run] = (now() - start) * 1e3;
        start = now();
        collect(base, size, 1, addresses, pages);
        get_reset[run] = (now() - start) * 1e3;

        dirty(base, pages, every, run + 100);
        start = now();
        reset_all(base, size);
        reset[run] = (now() - start) * 1e3;
    }
    report_range(label, get, get_reset, reset, RUNS);
    /* the first call of the process, with buffers and caches cold */
    if (every == EVERY_OTHER) printf("%s GetWriteWatch, first call (ms) %.4f\n", label, get[0]);
    unwatch(base, size);
    free(addresses);
}

/* A garbage collector's frame on a populated heap: write about one page in
 * `every`, collect with reset, read every reported page. */
static void bench_frames(size_t size, size_t every, const char *label)
{
    size_t pages = size / page, i, count;
    int frames = quick ? 5 : 20, frame;
    double times[20], start;
    void **addresses;
    volatile char sum = 0;
    char name[128], *base;

    if (!(addresses = malloc(pages * sizeof(*addresses)))) fail("malloc");
    base = watch(size);
    for (i = 0; i < pages; i++) base[i * page] = 1;
    reset_all(base, size);
    for (frame = 0; frame < frames; frame++)
    {
        start = now();
        dirty(base, pages, every, frame);
        count = collect(base, size, 1, addresses, pages);
        /* the floor returns ranges, not addresses: it reads the pages it wrote */
        for (i = 0; i < count && current != FLOOR; i++) sum += *(char *)addresses[i];
        for (i = 0; i < count && current == FLOOR; i++) sum += base[(i * every % pages) * page];
        times[frame] = (now() - start) * 1e3;
    }
    snprintf(name, sizeof(name), "frame, %s (ms)", label);
    report(name, median(times, frames));
    unwatch(base, size);
    free(addresses);
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

static void bench_mappings(void)
{
    size_t size = (size_t)1 << 30, pages = size / page;
    char *base = watch(size);
    int before = count_mappings();

    dirty(base, pages, 100, 0);
    report("mappings before 1 GiB 1% written", before);
    report("mappings after 1 GiB 1% written", count_mappings());
    unwatch(base, size);
}

static int child(void)
{
    size_t s, f;
    char label[64];

    if (is_floor()) floor_init();
    else host_init(0);
    if (is_floor()) page = sysconf(_SC_PAGESIZE);
    bench_first_write();
    for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]) - quick; s++)
    {
        for (f = 0; f < sizeof(fractions) / sizeof(fractions[0]); f++)
        {
            if (quick && f >= 2 && s >= 2) continue;
            /* every other page: the worst case for runs, at the sizes that matter */
            if (fractions[f].every == EVERY_OTHER && s < 2) continue;
            snprintf(label, sizeof(label), "%s %s", sizes[s].name, fractions[f].name);
            bench_range(sizes[s].size, fractions[f].every, label);
        }
    }
    bench_frames((size_t)256 << 20, 20, "256 MiB 5%");
    bench_frames((size_t)256 << 20, 1000, "256 MiB 0.1%");
    bench_frames((size_t)1 << 30, 10000, "1 GiB 0.01%");
    bench_mappings();
    return 0;
}

struct figures
{
    int count;
    char names[MAX_FIGURES][96];
    double values[IMPLEMENTATIONS][MAX_FIGURES];
    double rounds[IMPLEMENTATIONS][MAX_FIGURES][ROUNDS];
};

/* One run of an implementation's process: its figures for this round. */
static void run_implementation(const char *self, enum implementation impl, int round, struct figures *figures)
{
    char command[512], line[256];
    FILE *pipe;
    int count = 0;

    snprintf(command, sizeof(command), "WRITEWATCH_BACKEND=%s WWBENCH_CHILD=%d %s%s", implementation_names[impl],
             impl, self, quick ? " --quick" : "");
    if (!(pipe = popen(command, "r"))) fail("popen");
    while (count < MAX_FIGURES && fgets(line, sizeof(line), pipe))
    {
        char *value = strrchr(line, ' ');

        if (!value) continue;
        *value = 0;
        if (impl == FLOOR) snprintf(figures->names[count], sizeof(figures->names[count]), "%.95s", line);
        figures->rounds[impl][count++][round] = atof(value + 1);
    }
    if (pclose(pipe) || (impl != FLOOR && count != figures->count))
    {
        fprintf(stderr, "wwbench: the %s run failed\n", implementation_names[impl]);
        exit(1);
    }
    figures->count = count;
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

/* Machines of one kind differ about 20x in what faults and page tables
 * cost: every report starts with this one's. */
static void print_fault_cost(const struct figures *figures)
{
    int i;

    for (i = 0; i < figures->count; i++)
    {
        if (strcmp(figures->names[i], "first write after reset (us)")) continue;
        printf("Per-fault cost of this machine: %.2f us for the first write to a write-protected page "
               "(bare userfaultfd WP-async), %.2f us with mprotect and a signal.\n\n", figures->values[FLOOR][i],
               figures->values[FALLBACK][i]);
    }
}

/* figure names end with "(unit)": the size and dirty fraction come first */
static void write_data(const char *path, const struct figures *figures)
{
    FILE *file = fopen(path, "w");
    int i;

    if (!file) fail(path);
    fprintf(file, "# size_mib dirty_percent floor uffd mprotect  (GetWriteWatch+reset, ms)\n");
    for (i = 0; i < figures->count; i++)
    {
        double size, percent;
        char unit[8];

        if (!strstr(figures->names[i], "GetWriteWatch+reset")) continue;
        if (sscanf(figures->names[i], "%lf %3s %lf%%", &size, unit, &percent) != 3) continue;
        if (!strcmp(unit, "GiB")) size *= 1024;
        fprintf(file, "%g %g %g %g %g\n", size, percent, figures->values[FLOOR][i], figures->values[KERNEL][i],
                figures->values[FALLBACK][i] < 0 ? NAN : figures->values[FALLBACK][i]);
    }
    fclose(file);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *env = getenv("WWBENCH_CHILD");
    static struct figures figures;
    int i, round, figure;

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
    if (env)
    {
        current = atoi(env);
        return child();
    }

    for (round = 0; round < ROUNDS; round++)
        for (i = 0; i < IMPLEMENTATIONS; i++) run_implementation(argv[0], i, round, &figures);
    for (i = 0; i < IMPLEMENTATIONS; i++)
        for (figure = 0; figure < figures.count; figure++)
            figures.values[i][figure] = median(figures.rounds[i][figure], ROUNDS);
    print_fault_cost(&figures);
    printf("Medians of %d runs in each of %d processes per implementation, the four in turn, on the native "
           "host; floor: bare userfaultfd WP-async faults and one raw PAGEMAP_SCAN with room for every region "
           "(for ResetWriteWatch one without an output vector), no module; batched: upstream Wine's walk, "
           "256 regions a PAGEMAP_SCAN from walk_end, addresses written into the array, signals blocked.\n\n",
           RUNS, ROUNDS);
    printf("| figure | floor | batched | uffd | mprotect | uffd / floor | uffd / batched | mprotect / uffd |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (i = 0; i < figures.count; i++)
    {
        printf("| %s", figures.names[i]);
        print_value(figures.values[FLOOR][i]);
        print_value(figures.values[BATCHED][i]);
        print_value(figures.values[KERNEL][i]);
        print_value(figures.values[FALLBACK][i]);
        print_ratio(figures.values[KERNEL][i], figures.values[FLOOR][i]);
        print_ratio(figures.values[KERNEL][i], figures.values[BATCHED][i]);
        print_ratio(figures.values[FALLBACK][i], figures.values[KERNEL][i]);
        printf(" |\n");
    }
    if (data) write_data(data, &figures);
    return 0;
}
