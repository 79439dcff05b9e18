/*
 * Failures of the kernel path, injected through the module's test seam:
 * each either falls back for the allocation or returns a clear status, and
 * no written page is lost.  They apply to the kernel backend only.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "writewatch_private.h"
#include "host.h"
#include "test.h"

#define RESULTS 4096
static void *results[RESULTS];

static int kernel_backend_in_use(void)
{
    struct writewatch_info info;

    writewatch_get_info(&info);
    if (info.backend == WRITEWATCH_BACKEND_UFFD) return 1;
    printf("skipped: the kernel backend is not in use\n");
    return 0;
}

static uintptr_t count_pages(char *base, size_t pages)
{
    uintptr_t count = RESULTS;

    ok(get_watch(0, base, pages * page, results, &count) == 0, "query failed\n");
    return count;
}

/* A mapping the kernel refuses to register is watched by the fallback. */
static void test_refused_registration_falls_back(void)
{
    static const int errors[] = { EINVAL, ENOMEM, EPERM };
    static const enum writewatch_kernel_op ops[] = { WRITEWATCH_OP_REGISTER, WRITEWATCH_OP_WRITEPROTECT };
    writewatch_status status;
    size_t i, j;

    if (!kernel_backend_in_use()) return;
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    {
        for (j = 0; j < sizeof(errors) / sizeof(errors[0]); j++)
        {
            char *base;

            writewatch_inject_error(ops[i], errors[j]);
            base = host_alloc(16 * page, PROT_READ | PROT_WRITE, &status);
            ok(base != NULL, "op %zu error %d: allocation failed with %#x\n", i, errors[j], (unsigned int)status);
            if (!base) continue;
            ok(count_pages(base, 16) == 0, "op %zu error %d: fresh pages reported\n", i, errors[j]);
            base[3 * page] = base[7 * page] = 1;
            ok(count_pages(base, 16) == 2 && results[0] == base + 3 * page && results[1] == base + 7 * page,
               "op %zu error %d: writes not tracked\n", i, errors[j]);
            host_free(base, 16 * page);
        }
    }
}

/* A scan that fails says so, changes no output, and loses no page. */
static void test_failed_scan_loses_nothing(void)
{
    static const int errors[] = { ENOMEM, EFAULT, EINVAL };
    size_t pages = RESULTS, i, e;
    char *base;

    if (!kernel_backend_in_use()) return;
    base = host_alloc(pages * page, PROT_READ | PROT_WRITE, (writewatch_status[1]){ 0 });
    for (e = 0; e < sizeof(errors) / sizeof(errors[0]); e++)
    {
        uintptr_t count = RESULTS;
        writewatch_status status;

        for (i = 0; i < pages; i += 2) base[i * page] = 1;
        writewatch_inject_error(WRITEWATCH_OP_PAGEMAP_SCAN, errors[e]);
        status = get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count);
        ok(status == (errors[e] == ENOMEM ? WRITEWATCH_STATUS_NO_MEMORY : WRITEWATCH_STATUS_UNSUCCESSFUL),
           "error %d gave status %#x\n", errors[e], (unsigned int)status);
        ok(count == RESULTS, "a failed call changed the count\n");
        ok(count_pages(base, pages) == pages / 2, "error %d: %lu pages left, expected %zu\n", errors[e],
           (unsigned long)count_pages(base, pages), pages / 2);
        ok(writewatch_reset_write_watch(base, pages * page) == 0, "reset failed\n");
        ok(count_pages(base, pages) == 0, "reset left pages\n");
    }
    host_free(base, pages * page);
}

/* A walk the kernel stops half way, after it reset pages, because a mapping
 * lost its registration behind the module's back: every page it may have
 * reset stays reported, and the mapping is registered again. */
static void test_walk_stopped_half_way_over_reports(void)
{
    size_t pages = 64, i, lost = 0;
    uintptr_t count = RESULTS;
    writewatch_status status;
    char *base;

    if (!kernel_backend_in_use()) return;
    base = host_alloc(pages * page, PROT_READ | PROT_WRITE, &status);
    for (i = 0; i < pages; i += 2) base[i * page] = 1;
    if (mmap(base + 60 * page, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        == MAP_FAILED) return;
    status = get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count);
    ok(status == WRITEWATCH_STATUS_UNSUCCESSFUL, "the walk gave %#x\n", (unsigned int)status);
    count = RESULTS;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, pages * page, results, &count) == 0, "second query failed\n");
    for (i = 0; i < 60; i += 2)
    {
        uintptr_t j;

        for (j = 0; j < count && results[j] != base + i * page; j++);
        lost += j == count;
    }
    ok(!lost && count <= pages, "%zu written pages lost, %lu reported\n", lost, (unsigned long)count);
    ok(count_pages(base, pages) == 0, "reset left pages\n");
    base[5 * page] = 1;
    ok(count_pages(base, pages) == 1 && results[0] == base + 5 * page, "tracking did not resume\n");
    host_free(base, pages * page);
}

/* The same in a later pass of a walk past the kernel's 512 regions, in a
 * batch after one that was copied out: the first batch is the answer, and
 * every page the failing walk may have reset stays reported. */
static void test_walk_stopped_in_a_later_pass_over_reports(void)
{
    size_t runs = RUN_BATCH + 3 * 512, pages = 2 * runs, i, lost = 0;
    uintptr_t first = RESULTS, second = RESULTS, j;
    static void *more[RESULTS];
    writewatch_status status;
    char *base;

    if (!kernel_backend_in_use()) return;
    base = host_alloc((pages + 4) * page, PROT_READ | PROT_WRITE, &status);
    for (i = 0; i < pages; i += 2) base[i * page] = 1;
    if (mmap(base + pages * page, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
             0) == MAP_FAILED) return;
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, (pages + 4) * page, results, &first) == 0 && first == RUN_BATCH,
       "the first batch gave %lu pages\n", (unsigned long)first);
    ok(get_watch(WRITEWATCH_FLAG_RESET, base, (pages + 4) * page, more, &second) == 0, "second query failed\n");
    for (i = 0; i < pages; i += 2)
    {
        for (j = 0; j < first && results[j] != base + i * page; j++);
        if (j < first) continue;
        for (j = 0; j < second && more[j] != base + i * page; j++);
        lost += j == second;
    }
    ok(!lost, "%zu written pages lost, %lu and %lu reported\n", lost, (unsigned long)first, (unsigned long)second);
    host_free(base, (pages + 4) * page);
}

/* Failing resets and latches say so; a later call succeeds. */
static void test_failed_reset_and_latch_report_status(void)
{
    char *base;

    if (!kernel_backend_in_use()) return;
    base = host_alloc(16 * page, PROT_READ | PROT_WRITE, (writewatch_status[1]){ 0 });
    base[page] = 1;
    writewatch_inject_error(WRITEWATCH_OP_PAGEMAP_SCAN, ENOMEM);
    ok(writewatch_reset_write_watch(base, 16 * page) == WRITEWATCH_STATUS_NO_MEMORY, "reset did not fail\n");
    ok(count_pages(base, 16) == 1, "a failed reset lost the page\n");
    writewatch_inject_error(WRITEWATCH_OP_PAGEMAP_SCAN, ENOMEM);
    ok(writewatch_latch(base, 16 * page) == WRITEWATCH_STATUS_NO_MEMORY, "latch did not fail\n");
    ok(writewatch_reset_write_watch(base, 16 * page) == 0, "reset failed\n");
    ok(count_pages(base, 16) == 0, "reset left pages\n");
    host_free(base, 16 * page);
}

/* A decommit that cannot re-register says so; the fresh pages report
 * nothing, and committing them again registers them, so that their writes
 * are tracked. */
static void test_failed_decommit_recovers_at_commit(void)
{
    writewatch_status status;
    char *base;

    if (!kernel_backend_in_use()) return;
    base = host_alloc(16 * page, PROT_READ | PROT_WRITE, &status);
    base[8 * page] = 1;
    if (mmap(base, 4 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) return;
    writewatch_inject_error(WRITEWATCH_OP_REGISTER, ENOMEM);
    ok(writewatch_decommit(base, 4 * page) == WRITEWATCH_STATUS_NO_MEMORY, "decommit did not fail\n");
    ok(count_pages(base, 16) == 1 && results[0] == base + 8 * page, "decommitted pages reported\n");
    host_commit(base, 4 * page, PROT_READ | PROT_WRITE);
    ok(count_pages(base, 16) == 1, "recommitted pages reported\n");
    base[2 * page] = 1;
    ok(count_pages(base, 16) == 2 && results[0] == base + 2 * page, "writes to recommitted pages not tracked\n");
    host_free(base, 16 * page);
}

/* Runs the suite's binary to initialise with op failing; returns what it
 * printed: "backend failed-op errno". */
static void init_with_fault(enum writewatch_kernel_op op, int err, const char *backend, char *out, size_t size)
{
    char arguments[64];

    snprintf(arguments, sizeof(arguments), "--init-fault %d %d %s", op, err, backend);
    run_mode(arguments, out, size);
}

/* Any failure of the kernel path at start-up chooses the fallback and
 * records which operation failed and how; with WRITEWATCH_BACKEND=uffd it
 * chooses nothing. */
static void test_init_failures_choose_fallback(void)
{
    static const struct
    {
        enum writewatch_kernel_op op;
        int err;
    } cases[] =
    {
        { WRITEWATCH_OP_USERFAULTFD, ENOSYS },
        { WRITEWATCH_OP_USERFAULTFD, EPERM },
        { WRITEWATCH_OP_USERFAULTFD, EINVAL },
        { WRITEWATCH_OP_USERFAULTFD, EMFILE },
        /* what a Linux 6.1 kernel (Debian bookworm's) answers */
        { WRITEWATCH_OP_UFFDIO_API, EINVAL },
        { WRITEWATCH_OP_OPEN_PAGEMAP, EMFILE },
        { WRITEWATCH_OP_OPEN_PAGEMAP, EACCES },
        { WRITEWATCH_OP_REGISTER, EINVAL },
        { WRITEWATCH_OP_WRITEPROTECT, ENOMEM },
        { WRITEWATCH_OP_PAGEMAP_SCAN, ENOTTY },
        { WRITEWATCH_OP_PAGEMAP_SCAN, EPERM },
    };
    char out[1024], expected[64];
    size_t i;

    if (!kernel_backend_in_use()) return;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    {
        init_with_fault(cases[i].op, cases[i].err, "auto", out, sizeof(out));
        snprintf(expected, sizeof(expected), "mprotect %d %d\n", cases[i].op, cases[i].err);
        ok(!strcmp(out, expected), "case %zu: %s", i, out);
        init_with_fault(cases[i].op, cases[i].err, "uffd", out, sizeof(out));
        snprintf(expected, sizeof(expected), "none %d %d\n", cases[i].op, cases[i].err);
        ok(!strcmp(out, expected), "forced, case %zu: %s", i, out);
    }
    init_with_fault(WRITEWATCH_OP_NONE, 0, "auto", out, sizeof(out));
    ok(!strcmp(out, "uffd 0 0\n"), "without a fault: %s", out);
}

const struct test fault_tests[] =
{
    { "init_failures_choose_fallback", test_init_failures_choose_fallback },
    { "refused_registration_falls_back", test_refused_registration_falls_back },
    { "failed_scan_loses_nothing", test_failed_scan_loses_nothing },
    { "walk_stopped_half_way_over_reports", test_walk_stopped_half_way_over_reports },
    { "walk_stopped_in_a_later_pass_over_reports", test_walk_stopped_in_a_later_pass_over_reports },
    { "failed_reset_and_latch_report_status", test_failed_reset_and_latch_report_status },
    { "failed_decommit_recovers_at_commit", test_failed_decommit_recovers_at_commit },
    { NULL, NULL }
};
