/*
 * writewatch: the kernel backend.
 *
 * Watched ranges are registered with one userfaultfd in asynchronous
 * write-protect mode (Linux 6.7+): the kernel resolves the first write to a
 * protected page by itself and records it, with no signal.  PAGEMAP_SCAN on
 * /proc/self/pagemap returns the written pages as ranges, and with
 * PM_SCAN_WP_MATCHING protects exactly the pages it reports in the same walk.
 *
 * Transparent huge pages are kept out of watched ranges (MADV_NOHUGEPAGE):
 * a huge page is tracked and split as a whole, which costs a split on the
 * first write and would make a partial report split it again.
 */

#if 0
#pragma makedep unix
#endif

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "writewatch_private.h"
#include "wine/debug.h"

WINE_DEFAULT_DEBUG_CHANNEL(writewatch);

#define REQUIRED_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

/* page_region entries per PAGEMAP_SCAN call; a walk resumes from walk_end */
#define REGION_BATCH 256

static int uffd_fd = -1;
static int pagemap_fd = -1;

#ifdef WRITEWATCH_FAULT_INJECTION
static struct
{
    int err;
    unsigned int skip;
} injected[WRITEWATCH_OP_COUNT];

void writewatch_inject_error(enum writewatch_kernel_op op, int err, unsigned int skip)
{
    injected[op].err = err;
    injected[op].skip = skip;
}

int writewatch_injected_error(enum writewatch_kernel_op op)
{
    int err = injected[op].err;

    if (!err) return 0;
    if (injected[op].skip)
    {
        injected[op].skip--;
        return 0;
    }
    injected[op].err = 0;
    return err;
}

#define INJECT_ERROR(op) \
    do { int err_ = writewatch_injected_error(op); if (err_) { errno = err_; return -1; } } while (0)
#else
#define INJECT_ERROR(op) do { } while (0)
#endif

static int open_userfaultfd(void)
{
    INJECT_ERROR(WRITEWATCH_OP_USERFAULTFD);
    /* user-mode-only faults need no privilege, whatever vm.unprivileged_userfaultfd says */
    return syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
}

static int open_pagemap(void)
{
    INJECT_ERROR(WRITEWATCH_OP_OPEN_PAGEMAP);
    return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

static int register_range(char *start, char *end)
{
    struct uffdio_register args = { .range = { (uintptr_t)start, end - start }, .mode = UFFDIO_REGISTER_MODE_WP };

    INJECT_ERROR(WRITEWATCH_OP_REGISTER);
    return ioctl(uffd_fd, UFFDIO_REGISTER, &args);
}

static void unregister_range(char *start, char *end)
{
    struct uffdio_range range = { (uintptr_t)start, end - start };

    if (ioctl(uffd_fd, UFFDIO_UNREGISTER, &range)) WARN("UFFDIO_UNREGISTER: %s\n", strerror(errno));
}

static int write_protect_range(char *start, char *end)
{
    struct uffdio_writeprotect args = { .range = { (uintptr_t)start, end - start },
                                        .mode = UFFDIO_WRITEPROTECT_MODE_WP };

    INJECT_ERROR(WRITEWATCH_OP_WRITEPROTECT);
    return ioctl(uffd_fd, UFFDIO_WRITEPROTECT, &args);
}

/* One PAGEMAP_SCAN for written pages; returns the number of regions or -1
 * with errno set.  With reset, the reported pages are write-protected. */
static int scan_written_pages(char *start, char *end, int reset, struct page_region *regions,
                              uint64_t max_pages, char **walk_end)
{
    struct pm_scan_arg args =
    {
        .size = sizeof(args),
        .flags = PM_SCAN_CHECK_WPASYNC | (reset ? PM_SCAN_WP_MATCHING : 0),
        .start = (uintptr_t)start,
        .end = (uintptr_t)end,
        .vec = (uintptr_t)regions,
        .vec_len = REGION_BATCH,
        .max_pages = max_pages,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    int ret;

    INJECT_ERROR(WRITEWATCH_OP_PAGEMAP_SCAN);
    do ret = ioctl(pagemap_fd, PAGEMAP_SCAN, &args);
    while (ret < 0 && errno == EINTR);
    *walk_end = (char *)(uintptr_t)args.walk_end;
    return ret;
}

/* Registers [start, end) and protects it, so that every page reads clean. */
static int watch_range(char *start, char *end)
{
    int err;

    /* keep tracking at 4 KiB: see the comment at the top */
    if (madvise(start, end - start, MADV_NOHUGEPAGE)) TRACE("MADV_NOHUGEPAGE: %s\n", strerror(errno));
    if (register_range(start, end)) return errno;
    if (!write_protect_range(start, end)) return 0;
    err = errno;
    WARN("UFFDIO_WRITEPROTECT %p-%p: %s\n", start, end, strerror(err));
    unregister_range(start, end);
    return err;
}

/* A scan failed: say why, and re-register the allocation when a mapping in
 * it lost its registration, so that later calls over-report, never miss. */
static writewatch_status scan_failed(struct allocation *alloc, char *start, char *end, int err)
{
    ERR("PAGEMAP_SCAN %p-%p: %s\n", start, end, strerror(err));
    if (err == EPERM && register_range(alloc->base, alloc->base + alloc->size))
        ERR("re-registering %p-%p: %s\n", alloc->base, alloc->base + alloc->size, strerror(errno));
    return status_from_errno(err);
}

static writewatch_status uffd_add(struct allocation *alloc, WW_UNUSED int unix_prot)
{
    int err = watch_range(alloc->base, alloc->base + alloc->size);

    if (!err) return WRITEWATCH_STATUS_SUCCESS;
    WARN("cannot watch %p-%p: %s\n", alloc->base, alloc->base + alloc->size, strerror(err));
    return status_from_errno(err);
}

static writewatch_status uffd_set_protection(WW_UNUSED struct allocation *alloc, char *start, char *end,
                                             int unix_prot)
{
    if (!mprotect(start, end - start, unix_prot)) return WRITEWATCH_STATUS_SUCCESS;
    return status_from_errno(errno);
}

/* The fresh mapping is not registered: its pages would read as written. */
static writewatch_status uffd_decommit(WW_UNUSED struct allocation *alloc, char *start, char *end)
{
    return status_from_errno(watch_range(start, end));
}

static writewatch_status uffd_collect(struct allocation *alloc, char *start, char *end, int reset,
                                      void **addresses, uintptr_t room, uintptr_t *pos, char **next)
{
    struct page_region regions[REGION_BATCH];
    char *walk_end, *page;
    int i, count;

    while (start < end && *pos < room)
    {
        /* max_pages stops the walk, and the reset, at the caller's last entry */
        count = scan_written_pages(start, end, reset, regions, room - *pos, &walk_end);
        if (count < 0) return scan_failed(alloc, start, end, errno);
        for (i = 0; i < count; i++)
        {
            for (page = (char *)(uintptr_t)regions[i].start; page < (char *)(uintptr_t)regions[i].end;
                 page += writewatch_page_size)
                addresses[(*pos)++] = page;
        }
        if (!count && walk_end <= start)
        {
            ERR("PAGEMAP_SCAN made no progress at %p\n", start);
            return WRITEWATCH_STATUS_UNSUCCESSFUL;
        }
        start = walk_end;
    }
    *next = start < end ? start : end;
    return WRITEWATCH_STATUS_SUCCESS;
}

static writewatch_status uffd_reset(struct allocation *alloc, char *start, char *end)
{
    struct page_region regions[REGION_BATCH];
    char *walk_end;
    int count;

    while (start < end)
    {
        count = scan_written_pages(start, end, 1, regions, 0, &walk_end);
        if (count < 0) return scan_failed(alloc, start, end, errno);
        if (!count && walk_end <= start)
        {
            ERR("PAGEMAP_SCAN made no progress at %p\n", start);
            return WRITEWATCH_STATUS_UNSUCCESSFUL;
        }
        start = walk_end;
    }
    return WRITEWATCH_STATUS_SUCCESS;
}

const struct backend writewatch_uffd_backend =
{
    "uffd",
    WRITEWATCH_BACKEND_UFFD,
    uffd_add,
    uffd_set_protection,
    uffd_decommit,
    uffd_collect,
    uffd_reset,
    NULL, /* the host unmapped the allocation, and the registration went with it */
    NULL, /* writes never fault: the kernel records them */
    NULL, /* the kernel records what it writes on the program's behalf */
    NULL,
};

static int seccomp_filter_active(void)
{
    char line[256];
    int filtered = 0;
    FILE *status = fopen("/proc/self/status", "re");

    if (!status) return 0;
    while (fgets(line, sizeof(line), status))
    {
        if (!strncmp(line, "Seccomp:", 8)) filtered = atoi(line + 8) == 2;
    }
    fclose(status);
    return filtered;
}

static void explain_userfaultfd_error(struct writewatch_info *info, int err)
{
    const char *why;

    info->uffd_errno = err;
    switch (err)
    {
    case ENOSYS: why = "not built into this kernel (CONFIG_USERFAULTFD)"; break;
    case EPERM:
        why = seccomp_filter_active() ? "denied by a seccomp filter (a container or sandbox profile)"
                                      : "denied by the kernel's security policy";
        break;
    case EINVAL: why = "kernel older than 5.11 (no UFFD_USER_MODE_ONLY)"; break;
    case EMFILE:
    case ENFILE: why = "out of file descriptors"; break;
    default: why = "unexpected error"; break;
    }
    snprintf(info->reason, sizeof(info->reason), "userfaultfd(): %s: %s", strerror(err), why);
}

/* Opens a userfaultfd with the features Linux 6.7 added; records what the
 * kernel offers.  A context takes one UFFDIO_API, so a probe comes first. */
static int open_wp_async_userfaultfd(struct writewatch_info *info)
{
    struct uffdio_api api = { .api = UFFD_API };
    int fd;

    if ((fd = open_userfaultfd()) < 0)
    {
        explain_userfaultfd_error(info, errno);
        return -1;
    }
    if (!ioctl(fd, UFFDIO_API, &api)) info->uffd_features = api.features;
    close(fd);
    if ((info->uffd_features & REQUIRED_FEATURES) != REQUIRED_FEATURES)
    {
        info->uffd_errno = EINVAL;
        snprintf(info->reason, sizeof(info->reason),
                 "userfaultfd lacks WP_ASYNC/WP_UNPOPULATED (features %#llx; Linux 6.7+ needed)",
                 (unsigned long long)info->uffd_features);
        return -1;
    }

    if ((fd = open_userfaultfd()) < 0)
    {
        explain_userfaultfd_error(info, errno);
        return -1;
    }
    api.api = UFFD_API;
    api.features = REQUIRED_FEATURES;
    if (!ioctl(fd, UFFDIO_API, &api)) return fd;
    info->uffd_errno = errno;
    snprintf(info->reason, sizeof(info->reason), "UFFDIO_API: %s", strerror(errno));
    close(fd);
    return -1;
}

/* Watches two probe pages, writes one, and checks that a resetting scan
 * reports exactly it and a second scan nothing. */
static int self_test(struct writewatch_info *info)
{
    struct page_region regions[REGION_BATCH];
    size_t size = 2 * writewatch_page_size;
    char *probe, *walk_end;
    int err = 0, first, second;

    probe = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED) return errno;
    if ((err = watch_range(probe, probe + size)))
    {
        snprintf(info->reason, sizeof(info->reason), "UFFDIO_REGISTER/WRITEPROTECT: %s", strerror(err));
        goto done;
    }
    probe[writewatch_page_size] = 1;
    first = scan_written_pages(probe, probe + size, 1, regions, 0, &walk_end);
    if (first < 0)
    {
        err = info->pagemap_scan_errno = errno;
        snprintf(info->reason, sizeof(info->reason), "PAGEMAP_SCAN: %s%s", strerror(err),
                 err == ENOTTY ? " (Linux 6.7+ needed)" : "");
        goto done;
    }
    second = scan_written_pages(probe, probe + size, 1, regions + 1, 0, &walk_end);
    if (first != 1 || second != 0 || regions[0].start != (uintptr_t)(probe + writewatch_page_size) ||
        regions[0].end != (uintptr_t)(probe + size))
    {
        err = info->pagemap_scan_errno = EIO;
        snprintf(info->reason, sizeof(info->reason), "PAGEMAP_SCAN self-test gave wrong pages (%d, %d)",
                 first, second);
    }
done:
    munmap(probe, size);
    return err;
}

int writewatch_uffd_init(struct writewatch_info *info)
{
    if ((uffd_fd = open_wp_async_userfaultfd(info)) < 0) return 0;
    if ((pagemap_fd = open_pagemap()) < 0)
    {
        info->pagemap_scan_errno = errno;
        snprintf(info->reason, sizeof(info->reason), "/proc/self/pagemap: %s", strerror(errno));
    }
    else if (!self_test(info))
    {
        snprintf(info->reason, sizeof(info->reason), "userfaultfd WP-async and PAGEMAP_SCAN available");
        return 1;
    }
    if (pagemap_fd >= 0) close(pagemap_fd);
    close(uffd_fd);
    pagemap_fd = uffd_fd = -1;
    return 0;
}
