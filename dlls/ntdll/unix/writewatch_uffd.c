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
 *
 * An allocation is registered whole, but write-protected ("armed") only
 * where the host makes pages accessible, and only armed pages are scanned:
 * a page never made accessible since it was reserved or decommitted holds
 * nothing written, so a large reservation costs no page tables until it is
 * committed.  (Unprotected pages of a registered range read as written:
 * the kernel cannot tell them from pages written before registration.)
 * A page is armed before it becomes accessible, since a read would map the
 * zero page unprotected.
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
#include <sys/utsname.h>

#include "writewatch_private.h"
#include "wine/debug.h"

WINE_DEFAULT_DEBUG_CHANNEL(writewatch);

#define REQUIRED_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

static int uffd_fd = -1;
static int pagemap_fd = -1;
/* whether a resetting walk may go without an output vector */
static int protect_without_vec;

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

/* UFFDIO_API: a context takes one, which fails when the kernel lacks a
 * feature asked for; on success it returns every feature the kernel offers. */
static int uffdio_api(int fd, struct uffdio_api *api)
{
    INJECT_ERROR(WRITEWATCH_OP_UFFDIO_API);
    return ioctl(fd, UFFDIO_API, api);
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

/* One PAGEMAP_SCAN for written pages into vec; returns the number of
 * regions or -1 with errno set, and where the walk stopped.  With reset,
 * the reported pages are write-protected; with reset and no vec, every page
 * of the range is. */
static int scan_written_pages(char *start, char *end, int reset, struct page_region *vec, size_t vec_len,
                              uint64_t max_pages, char **walk_end)
{
    struct pm_scan_arg args =
    {
        .size = sizeof(args),
        .flags = PM_SCAN_CHECK_WPASYNC | (reset ? PM_SCAN_WP_MATCHING : 0),
        .start = (uintptr_t)start,
        .end = (uintptr_t)end,
        .vec = (uintptr_t)vec,
        .vec_len = vec_len,
        .max_pages = max_pages,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    int ret;

    *walk_end = start;
    INJECT_ERROR(WRITEWATCH_OP_PAGEMAP_SCAN);
    do ret = ioctl(pagemap_fd, PAGEMAP_SCAN, &args);
    while (ret < 0 && errno == EINTR);
    if (args.walk_end) *walk_end = (char *)(uintptr_t)args.walk_end;
    return ret;
}

/* Registers [start, end) for write-protect tracking, at 4 KiB (see the
 * comment at the top). */
static int register_watched_range(char *start, char *end)
{
    if (madvise(start, end - start, MADV_NOHUGEPAGE)) TRACE("MADV_NOHUGEPAGE: %s\n", strerror(errno));
    return register_range(start, end) ? errno : 0;
}

/* Registers [start, end) and protects it, so that every page reads clean.
 * For ranges smaller than a huge page: registration gives the range a
 * mapping of its own, which no huge page fits, without MADV_NOHUGEPAGE. */
static int watch_small_range(char *start, char *end)
{
    int err;

    if (register_range(start, end)) return errno;
    if (!write_protect_range(start, end)) return 0;
    err = errno;
    WARN("UFFDIO_WRITEPROTECT %p-%p: %s\n", start, end, strerror(err));
    unregister_range(start, end);
    return err;
}

/* Protects the pages of [start, end) not protected since they were last
 * made accessible: they were never, so nothing on them is written. */
static writewatch_status arm_pages(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), run_last;

    if (!page_set_init(&alloc->armed, alloc)) return WRITEWATCH_STATUS_NO_MEMORY;
    for (first = page_set_next_missing(&alloc->armed, first, last); first < last;
         first = page_set_next_missing(&alloc->armed, run_last, last))
    {
        char *run_start = page_address(alloc, first), *run_end;

        run_last = page_set_next(&alloc->armed, NULL, first, last);
        run_end = page_address(alloc, run_last);
        /* a decommit that could not register the fresh mapping left it to us */
        if (write_protect_range(run_start, run_end) &&
            (register_watched_range(run_start, run_end) || write_protect_range(run_start, run_end)))
        {
            WARN("UFFDIO_WRITEPROTECT %p-%p: %s\n", run_start, run_end, strerror(errno));
            return status_from_errno(errno);
        }
        page_set_add(&alloc->armed, first, run_last);
    }
    return WRITEWATCH_STATUS_SUCCESS;
}

/* A scan of [start, end) failed.  Once the walk began (walk_end moved) it
 * may have protected any of its pages: past the kernel's 512 regions a
 * walk goes in passes, and walk_end does not say how far the failing one
 * got.  With reset, they all go to out as reported, so that they stay
 * reported.  When a mapping in the allocation lost its registration behind
 * the module's back, it is registered again, so that later calls
 * over-report, never miss. */
static writewatch_status scan_failed(struct allocation *alloc, char *start, char *walk_end, char *end, int reset,
                                     int err, struct run_buffer *out)
{
    ERR("PAGEMAP_SCAN %p-%p: %s\n", start, end, strerror(err));
    if (reset && walk_end > start && !run_buffer_append(out, start, end))
        ERR("lost the written state of %p-%p\n", start, end);
    if (err == EPERM && register_range(alloc->base, alloc->base + alloc->size))
        ERR("re-registering %p-%p: %s\n", alloc->base, alloc->base + alloc->size, strerror(errno));
    return status_from_errno(err);
}

static writewatch_status uffd_add(struct allocation *alloc, int unix_prot)
{
    char *end = alloc->base + alloc->size;
    writewatch_status status;
    int err;

    if ((err = register_watched_range(alloc->base, end)))
    {
        WARN("cannot watch %p-%p: %s\n", alloc->base, end, strerror(err));
        return status_from_errno(err);
    }
    if (unix_prot == PROT_NONE || !(status = arm_pages(alloc, alloc->base, end))) return WRITEWATCH_STATUS_SUCCESS;
    unregister_range(alloc->base, end);
    return status;
}

/* Pages made accessible are protected first. */
static writewatch_status uffd_set_protection(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    writewatch_status status;

    if (unix_prot != PROT_NONE && (status = arm_pages(alloc, start, end))) return status;
    if (!mprotect(start, end - start, unix_prot)) return WRITEWATCH_STATUS_SUCCESS;
    return status_from_errno(errno);
}

/* The fresh mapping is not registered, and its pages are protected when
 * they are committed again. */
static writewatch_status uffd_decommit(struct allocation *alloc, char *start, char *end)
{
    page_set_remove(&alloc->armed, page_index(alloc, start), page_index(alloc, end));
    return status_from_errno(register_watched_range(start, end));
}

/* The first run of armed pages of [*first, last), or 0 when there is none. */
static int next_armed_run(const struct allocation *alloc, size_t *first, size_t last, char **start, char **end)
{
    size_t run_last = last;

    if (alloc->armed.count != alloc->pages)
    {
        *first = page_set_next(&alloc->armed, NULL, *first, last);
        run_last = page_set_next_missing(&alloc->armed, *first, last);
    }
    if (*first >= last) return 0;
    *start = page_address(alloc, *first);
    *end = page_address(alloc, run_last);
    *first = run_last;
    return 1;
}

/* The vector for a walk of [start, end) into out: no longer than the walk
 * can fill (a region per two pages of the range, and no more than
 * max_pages), since a longer one costs the kernel a bounce buffer beyond
 * the walk's needs.  Until a walk returned regions, no more than
 * SMALL_BATCH, whose bounce buffer comes from the kernel's slab: most
 * answers fit, and one that fills it is large enough to amortize a bounce
 * buffer from the page allocator over the walks after it. */
static size_t vector_length(const struct run_buffer *out, char *start, char *end, uintptr_t max_pages)
{
    size_t length = out->capacity - out->count, fill = (((size_t)(end - start) >> writewatch_page_shift) + 1) / 2;

    if (fill > max_pages) fill = max_pages;
    if (!out->count && fill > SMALL_BATCH) fill = SMALL_BATCH;
    return fill < length ? fill : length;
}

/* PAGEMAP_SCANs of the armed runs into out, resuming where a full vector or
 * max_pages stopped the walk. */
static writewatch_status uffd_collect(struct allocation *alloc, char *start, char *end, int reset,
                                      uintptr_t max_pages, struct run_buffer *out, char **next)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), i;
    char *run_start, *run_end, *walk_end;
    /* max_pages binds only below the pages of the range */
    int counted = max_pages < last - first;
    int count;

    *next = end;
    if (!next_armed_run(alloc, &first, last, &run_start, &run_end)) return WRITEWATCH_STATUS_SUCCESS;
    while (max_pages && out->count < out->capacity)
    {
        /* max_pages stops the walk, and the reset, at the caller's last entry */
        count = scan_written_pages(run_start, run_end, reset, out->runs + out->count,
                                   vector_length(out, run_start, run_end, max_pages), max_pages, &walk_end);
        if (count < 0) return scan_failed(alloc, run_start, walk_end, run_end, reset, errno, out);
        if (counted)
            for (i = out->count; i < out->count + count; i++) max_pages -= run_pages(&out->runs[i]);
        out->count += count;
        /* A walk stopped early ends at or past the last region it returned.
         * Past the kernel's own 512 regions a walk goes in passes, and when
         * the last pass reaches the end, walk_end keeps where that pass
         * began: the start of a region returned (Linux 6.18). */
        if (count && (uintptr_t)walk_end >= out->runs[out->count - 1].end && walk_end < run_end)
            run_start = walk_end;
        else if (!next_armed_run(alloc, &first, last, &run_start, &run_end))
            return WRITEWATCH_STATUS_SUCCESS;
    }
    *next = run_start;
    return WRITEWATCH_STATUS_SUCCESS;
}

/* Resets through walks with an output vector, a batch at a time. */
static writewatch_status reset_through_vector(struct allocation *alloc, char *start, char *end)
{
    writewatch_status status = WRITEWATCH_STATUS_SUCCESS;
    struct page_region storage[SMALL_BATCH];
    struct run_buffer scratch;

    run_buffer_init(&scratch, storage, SMALL_BATCH);
    while (!status && start < end)
    {
        run_buffer_empty(&scratch, SMALL_BATCH);
        status = uffd_collect(alloc, start, end, 1, UINTPTR_MAX, &scratch, &start);
    }
    return status;
}

/* One write-protecting walk per armed run, without an output vector where
 * the kernel allows it. */
static writewatch_status uffd_reset(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);
    struct run_buffer none;
    char *run_start, *run_end, *walk_end;

    if (!protect_without_vec) return reset_through_vector(alloc, start, end);
    while (next_armed_run(alloc, &first, last, &run_start, &run_end))
    {
        if (scan_written_pages(run_start, run_end, 1, NULL, 0, 0, &walk_end) >= 0) continue;
        /* a reset that fails half way leaves nothing to keep */
        run_buffer_init(&none, NULL, 0);
        return scan_failed(alloc, run_start, walk_end, run_end, 0, errno, &none);
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

/* What to do about a kernel that is too old, in plain words. */
#define NEWER_KERNEL "writes are tracked with mprotect and signals instead, as stock Wine does. " \
    "For kernel write watches, boot Linux 6.7 or newer (on Debian bookworm: linux-image-amd64 " \
    "from bookworm-backports)"

static const char *kernel_release(void)
{
    static struct utsname name;

    if (!name.release[0] && uname(&name)) return "unknown";
    return name.release;
}

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

/* Says why the kernel refused WP-async, with what it offers, asked of a
 * second context. */
static void explain_refused_features(struct writewatch_info *info, int err)
{
    struct uffdio_api api = { .api = UFFD_API };
    int fd;

    info->uffd_errno = err;
    if (err != EINVAL)
    {
        snprintf(info->reason, sizeof(info->reason), "UFFDIO_API: %s", strerror(err));
        return;
    }
    if ((fd = open_userfaultfd()) >= 0)
    {
        if (!uffdio_api(fd, &api)) info->uffd_features = api.features;
        close(fd);
    }
    snprintf(info->reason, sizeof(info->reason),
             "this kernel (Linux %s) refused userfaultfd WP-async (it offers features %#llx), which Linux 6.7 "
             "added; %s", kernel_release(), (unsigned long long)info->uffd_features, NEWER_KERNEL);
}

/* Opens a userfaultfd with the features Linux 6.7 added; records what the
 * kernel offers. */
static int open_wp_async_userfaultfd(struct writewatch_info *info)
{
    struct uffdio_api api = { .api = UFFD_API, .features = REQUIRED_FEATURES };
    int fd;

    if ((fd = open_userfaultfd()) < 0)
    {
        explain_userfaultfd_error(info, errno);
        return -1;
    }
    if (!uffdio_api(fd, &api))
    {
        info->uffd_features = api.features;
        return fd;
    }
    explain_refused_features(info, errno);
    close(fd);
    return -1;
}

/* Watches two probe pages, writes one, and checks that a resetting scan
 * reports exactly it and a second scan nothing. */
static int self_test(struct writewatch_info *info)
{
    struct page_region regions[4];
    size_t size = 2 * writewatch_page_size;
    char *probe, *walk_end;
    int err = 0, first, second;

    probe = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED) return errno;
    if ((err = watch_small_range(probe, probe + size)))
    {
        snprintf(info->reason, sizeof(info->reason), "UFFDIO_REGISTER/WRITEPROTECT: %s", strerror(err));
        goto done;
    }
    probe[writewatch_page_size] = 1;
    first = scan_written_pages(probe, probe + size, 1, regions, 4, 0, &walk_end);
    if (first < 0 && (err = info->pagemap_scan_errno = errno) == ENOTTY)
    {
        snprintf(info->reason, sizeof(info->reason),
                 "this kernel (Linux %s) has no PAGEMAP_SCAN, which Linux 6.7 added; %s", kernel_release(),
                 NEWER_KERNEL);
        goto done;
    }
    if (first < 0)
    {
        snprintf(info->reason, sizeof(info->reason), "PAGEMAP_SCAN: %s", strerror(err));
        goto done;
    }
    second = scan_written_pages(probe, probe + size, 1, regions + 1, 3, 0, &walk_end);
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

/* A resetting walk without an output vector dereferenced the missing
 * buffer when it had to split a huge page ("fs/proc/task_mmu: check
 * p->vec_buf for NULL"), fixed in Linux 6.17, 6.16.10 and 6.12.50.  Watched
 * ranges hold no huge page, but only fixed kernels get the faster walk. */
static int walk_without_vec_is_safe(void)
{
    unsigned int major, minor, patch = 0;

    if (sscanf(kernel_release(), "%u.%u.%u", &major, &minor, &patch) < 2) return 0;
    if (major != 6) return major > 6;
    if (minor == 16) return patch >= 10;
    if (minor == 12) return patch >= 50;
    return minor >= 17;
}

#ifdef WRITEWATCH_FAULT_INJECTION
int writewatch_reset_without_vec(int enable)
{
    int previous = protect_without_vec;

    protect_without_vec = enable;
    return previous;
}
#endif

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
        protect_without_vec = walk_without_vec_is_safe();
        TRACE("resets %s an output vector\n", protect_without_vec ? "without" : "with");
        return 1;
    }
    if (pagemap_fd >= 0) close(pagemap_fd);
    close(uffd_fd);
    pagemap_fd = uffd_fd = -1;
    return 0;
}
