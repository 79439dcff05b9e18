/*
 * writewatch: the kernel ABI the module needs (older system headers lack
 * it), and the batch sizes and the test seam the native tests see.
 */

#ifndef WRITEWATCH_PRIVATE_H
#define WRITEWATCH_PRIVATE_H

#include "writewatch.h"

#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/userfaultfd.h>
#include <linux/fs.h>
#endif

/* Kernel ABI that system headers older than Linux 6.7 lack.  page_region,
 * what PAGEMAP_SCAN answers, is the module's run of pages on any system. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN
#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN       (1 << 1)

struct page_region
{
    uint64_t start;
    uint64_t end;
    uint64_t categories;
};

struct pm_scan_arg
{
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif /* PAGEMAP_SCAN */

/* A query gathers runs of pages on its stack, in batches of SMALL_BATCH
 * (8 KiB, whose kernel bounce buffer comes from the slab) when its answer
 * cannot hold more, else of RUN_BATCH (48 KiB), each under one hold of the
 * lock: no query needs memory in proportion to its range. */
#define SMALL_BATCH (8192 / sizeof(struct page_region))
#define RUN_BATCH 2048

#ifdef WRITEWATCH_FAULT_INJECTION
/* Test seam: the next kernel operation op fails with err. */
void writewatch_inject_error(enum writewatch_kernel_op op, int err);
#endif

#endif /* WRITEWATCH_PRIVATE_H */
