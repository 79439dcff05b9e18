/*
 * writewatch: the kernel ABI the module needs (older system headers lack
 * it), and the batch sizes and the test seam the native tests see.
 */

#ifndef WRITEWATCH_PRIVATE_H
#define WRITEWATCH_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include "writewatch.h"

#ifdef __linux__
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#endif

/* Kernel ABI that system headers older than Linux 6.7 lack. */
#ifdef __linux__
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
    __u64 start;
    __u64 end;
    __u64 categories;
};

struct pm_scan_arg
{
    __u64 size;
    __u64 flags;
    __u64 start;
    __u64 end;
    __u64 walk_end;
    __u64 vec;
    __u64 vec_len;
    __u64 max_pages;
    __u64 category_inverted;
    __u64 category_mask;
    __u64 category_anyof_mask;
    __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif /* PAGEMAP_SCAN */
#endif /* __linux__ */

/* Runs of pages in ascending order, as PAGEMAP_SCAN returns them, in a
 * bounded buffer on the caller's stack: no query needs memory in proportion
 * to its range.  One that cannot hold more than SMALL_BATCH runs (8 KiB) is
 * gathered in that many, so that it touches little stack; a larger one in
 * batches of RUN_BATCH (48 KiB), each under one hold of the lock.  The
 * kernel's bounce buffer for up to SMALL_BATCH regions comes from its slab;
 * past 8 KiB from the page allocator, once a PAGEMAP_SCAN. */
#define SMALL_BATCH (8192 / sizeof(struct page_region))
#define RUN_BATCH 2048

#ifdef WRITEWATCH_FAULT_INJECTION
/* Test seam: the next kernel operation op fails with err. */
void writewatch_inject_error(enum writewatch_kernel_op op, int err);
#endif

#endif /* WRITEWATCH_PRIVATE_H */
