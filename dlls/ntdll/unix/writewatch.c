/*
 * writewatch: the Windows write-watch API on top of a tracking backend.
 *
 * The core keeps the list of write-watched allocations, checks requests
 * with Windows' rules and status codes, and adds to the backend's written
 * pages those VirtualProtect latched.  Inside, functions return 0 or an
 * errno value; the entries turn it into an NTSTATUS.  A query gathers its
 * answer in batches on its own stack under the lock, and copies each out
 * after leaving it.
 */

#if 0
#pragma makedep unix
#endif

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "writewatch_private.h"
#include "wine/debug.h"

WINE_DEFAULT_DEBUG_CHANNEL(writewatch);

static size_t writewatch_page_size;
/* log2 of the page size: page counts are shifts, not divisions */
static unsigned int writewatch_page_shift;

/* A set of an allocation's pages: a bitmap of one bit per page, allocated
 * on first use, and how many pages it holds, so that asking an empty set
 * costs nothing. */
struct page_set
{
    uint64_t *bits;
    size_t count;
};

/* A write-watched allocation.  The module lists them itself, sorted by
 * base, rather than hanging them on the host's views: a query leaves the
 * lock between batches and must find its allocation again by address, and
 * faults and system-call buffers come by address only; the list keeps the
 * module free of the host's view layout. */
struct allocation
{
    char *base;
    size_t size;
    size_t pages;
    const struct backend *backend;
    struct page_set latched;  /* written when a VirtualProtect latched them: reported until reset */
    struct page_set armed;    /* kernel backend: write-protected since last made accessible */
    struct page_set written;  /* fallback: written pages */
    uint8_t *prot;            /* fallback: the protection the host set, a byte a page */
};

/* Runs of pages in ascending order, as PAGEMAP_SCAN returns them. */
struct run_buffer
{
    struct page_region *runs;
    size_t count;
    size_t capacity;
};

static inline void run_buffer_init(struct run_buffer *buf, struct page_region *storage, size_t capacity)
{
    buf->runs = storage;
    buf->count = 0;
    buf->capacity = capacity;
}

/* A backend tracks which pages of an allocation were written.  Ranges are
 * page aligned and inside the allocation; the core holds the lock.  Like
 * every function of the module's inside, they return 0 or an errno value. */
struct backend
{
    enum writewatch_backend id;
    /* start tracking; every page clean */
    int (*add)(struct allocation *alloc, int unix_prot);
    int (*set_protection)(struct allocation *alloc, char *start, char *end, int unix_prot);
    /* the host replaced [start, end) by a fresh inaccessible mapping */
    int (*decommit)(struct allocation *alloc, char *start, char *end);
    /* Appends to out the first written pages of [start, end), at most *room,
     * which goes down by at least as many, as many runs as out holds; with
     * reset (the API's WRITE_WATCH_FLAG_RESET, PM_SCAN_WP_MATCHING) resets
     * exactly those.  *next is where the pages not gathered start.  On
     * failure, out is as it was, and what it reset reads as written again. */
    int (*collect)(struct allocation *alloc, char *start, char *end, int reset, uintptr_t *room,
                   struct run_buffer *out, char **next);
    /* every page of [start, end) clean */
    int (*reset)(struct allocation *alloc, char *start, char *end);
};

static size_t page_index(const struct allocation *alloc, const char *addr)
{
    return (size_t)(addr - alloc->base) >> writewatch_page_shift;
}

static char *page_address(const struct allocation *alloc, size_t index)
{
    return alloc->base + (index << writewatch_page_shift);
}

static const struct writewatch_lock *host_lock;
static const struct backend *default_backend;
static struct writewatch_info init_info;

/* Sorted by base; allocations never overlap. */
static struct allocation **allocations;
static size_t allocation_count, allocation_capacity;

/* Kernel failures are the module's, never the caller's bad parameters. */
static writewatch_status status_from_errno(int err)
{
    switch (err)
    {
    case 0: return WRITEWATCH_STATUS_SUCCESS;
    case ENOMEM: return WRITEWATCH_STATUS_NO_MEMORY;
    case ENOSYS: return WRITEWATCH_STATUS_NOT_SUPPORTED;
    default: return WRITEWATCH_STATUS_UNSUCCESSFUL;
    }
}

/* Page sets */

static int page_set_init(struct page_set *set, const struct allocation *alloc)
{
    if (!set->bits) set->bits = calloc((alloc->pages + 63) / 64, sizeof(uint64_t));
    return set->bits ? 0 : ENOMEM;
}

/* The pages of [*first, last) in *first's word; moves *first past them. */
static uint64_t take_word_mask(size_t *first, size_t last)
{
    size_t shift = *first % 64, bits = last - *first < 64 - shift ? last - *first : 64 - shift;

    *first += bits;
    return (bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1) << shift;
}

static void page_set_add(struct page_set *set, size_t first, size_t last)
{
    while (first < last)
    {
        uint64_t *word = &set->bits[first / 64], mask = take_word_mask(&first, last);

        set->count += __builtin_popcountll(mask & ~*word);
        *word |= mask;
    }
}

static void page_set_remove(struct page_set *set, size_t first, size_t last)
{
    while (set->count && first < last)
    {
        uint64_t *word = &set->bits[first / 64], mask = take_word_mask(&first, last);

        set->count -= __builtin_popcountll(mask & *word);
        *word &= ~mask;
    }
}

/* The first page of [first, last) whose bit, flipped by flip (all ones:
 * missing from the set), is set; last if none. */
static size_t find_page(const struct page_set *set, uint64_t flip, size_t first, size_t last)
{
    while (first < last)
    {
        size_t word = first / 64;
        uint64_t bits = ((set->count ? set->bits[word] : 0) ^ flip) >> (first % 64);

        if (bits) return first + __builtin_ctzll(bits) < last ? first + __builtin_ctzll(bits) : last;
        first = (word + 1) * 64;
    }
    return last;
}

static size_t page_set_next(const struct page_set *set, size_t first, size_t last)
{
    return set->count ? find_page(set, 0, first, last) : last;
}

static size_t page_set_next_missing(const struct page_set *set, size_t first, size_t last)
{
    return find_page(set, ~(uint64_t)0, first, last);
}

static int run_buffer_append(struct run_buffer *buf, char *start, char *end)
{
    struct page_region *run;

    if (buf->count && buf->runs[buf->count - 1].end == (uintptr_t)start)
    {
        buf->runs[buf->count - 1].end = (uintptr_t)end;
        return 1;
    }
    if (buf->count == buf->capacity) return 0;
    run = &buf->runs[buf->count++];
    run->start = (uintptr_t)start;
    run->end = (uintptr_t)end;
    run->categories = PAGE_IS_WRITTEN;
    return 1;
}

#ifdef __linux__

/* The kernel backend: watched ranges are registered with one userfaultfd
 * in asynchronous write-protect mode (Linux 6.7+): the kernel records the
 * first write to a protected page with no signal.  PAGEMAP_SCAN returns the
 * written pages as ranges and, with PM_SCAN_WP_MATCHING, protects exactly
 * those in the same walk.  Huge pages are kept out (MADV_NOHUGEPAGE): one
 * is tracked and split as a whole.  Pages are write-protected ("armed")
 * only where the host makes them accessible, before it does (a read would
 * map the zero page unprotected, which reads as written), and only armed
 * pages are scanned: a reservation costs no page tables until it is
 * committed.
 */

static int uffd_fd = -1, pagemap_fd = -1;

#ifdef WRITEWATCH_FAULT_INJECTION
static int injected[WRITEWATCH_OP_COUNT];

void writewatch_inject_error(enum writewatch_kernel_op op, int err)
{
    injected[op] = err;
}

/* The native tests' seam: whether op is to fail, with errno set. */
static int injected_error(enum writewatch_kernel_op op)
{
    errno = injected[op];
    injected[op] = 0;
    return errno != 0;
}
#else
#define injected_error(op) 0
#endif

/* One ioctl of op, which returns *result (result may be NULL): 0 or an
 * errno value. */
static int kernel_ioctl(enum writewatch_kernel_op op, int fd, unsigned long request, void *arg, int *result)
{
    int ret;

    if (injected_error(op)) return errno;
    do ret = ioctl(fd, request, arg);
    while (ret < 0 && errno == EINTR);
    if (ret < 0) return errno;
    if (result) *result = ret;
    return 0;
}

static int register_range(char *start, char *end)
{
    struct uffdio_register args = { .range = { (uintptr_t)start, end - start }, .mode = UFFDIO_REGISTER_MODE_WP };

    return kernel_ioctl(WRITEWATCH_OP_REGISTER, uffd_fd, UFFDIO_REGISTER, &args, NULL);
}

/* mode is UFFDIO_WRITEPROTECT_MODE_WP to protect, 0 to unprotect */
static int change_write_protection(char *start, char *end, __u64 mode)
{
    struct uffdio_writeprotect args = { .range = { (uintptr_t)start, end - start }, .mode = mode };

    return kernel_ioctl(WRITEWATCH_OP_WRITEPROTECT, uffd_fd, UFFDIO_WRITEPROTECT, &args, NULL);
}

/* One PAGEMAP_SCAN for written pages into vec: *count regions, and where
 * the walk stopped.  With reset, the reported pages are write-protected. */
static int scan_written_pages(char *start, char *end, int reset, struct page_region *vec, size_t vec_len,
                              uint64_t max_pages, int *count, char **walk_end)
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
    int err = kernel_ioctl(WRITEWATCH_OP_PAGEMAP_SCAN, pagemap_fd, PAGEMAP_SCAN, &args, count);

    *walk_end = args.walk_end ? (char *)(uintptr_t)args.walk_end : start;
    return err;
}

/* Registers [start, end) for write-protect tracking, at 4 KiB. */
static int register_watched_range(char *start, char *end)
{
    if (madvise(start, end - start, MADV_NOHUGEPAGE)) TRACE("MADV_NOHUGEPAGE: %s\n", strerror(errno));
    return register_range(start, end);
}

/* Protects the pages of [start, end) not protected since they were last
 * made accessible: they were never, so nothing on them is written. */
static int arm_pages(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), run_last;
    int err;

    if ((err = page_set_init(&alloc->armed, alloc))) return err;
    for (first = page_set_next_missing(&alloc->armed, first, last); first < last;
         first = page_set_next_missing(&alloc->armed, run_last, last))
    {
        char *run_start = page_address(alloc, first), *run_end;

        run_last = page_set_next(&alloc->armed, first, last);
        run_end = page_address(alloc, run_last);
        /* a decommit that could not register the fresh mapping left it to us */
        if ((err = change_write_protection(run_start, run_end, UFFDIO_WRITEPROTECT_MODE_WP)) &&
            !(err = register_watched_range(run_start, run_end)))
            err = change_write_protection(run_start, run_end, UFFDIO_WRITEPROTECT_MODE_WP);
        if (err)
        {
            WARN("UFFDIO_WRITEPROTECT %p-%p: %s\n", run_start, run_end, strerror(err));
            return err;
        }
        page_set_add(&alloc->armed, first, run_last);
    }
    return 0;
}

/* Gives back the written state a failed call took: the pages read as
 * written until the next reset, an over-report, never a miss. */
static void unprotect_pages(char *start, char *end)
{
    int err = change_write_protection(start, end, 0);

    if (err) ERR("lost the written state of %p-%p: %s\n", start, end, strerror(err));
}

/* A scan of [start, end) failed with err.  A mapping that lost its
 * registration is registered again.  With reset, what the collect reset is
 * given back: out's runs from first_run on and, once the walk began, all of
 * it (past 512 regions a walk goes in passes; walk_end says not how far). */
static int scan_failed(struct allocation *alloc, char *start, char *walk_end, char *end, int reset, int err,
                       struct run_buffer *out, size_t first_run)
{
    int reregister_err;

    ERR("PAGEMAP_SCAN %p-%p: %s\n", start, end, strerror(err));
    if (err == EPERM && (reregister_err = register_range(alloc->base, alloc->base + alloc->size)))
        ERR("re-registering %p-%p: %s\n", alloc->base, alloc->base + alloc->size, strerror(reregister_err));
    if (reset && walk_end > start) unprotect_pages(start, end);
    for (; reset && out->count > first_run; out->count--)
        unprotect_pages((char *)(uintptr_t)out->runs[out->count - 1].start,
                        (char *)(uintptr_t)out->runs[out->count - 1].end);
    out->count = first_run;
    return err;
}

static int uffd_add(struct allocation *alloc, int unix_prot)
{
    char *end = alloc->base + alloc->size;
    struct uffdio_range range = { (uintptr_t)alloc->base, alloc->size };
    int err;

    if ((err = register_watched_range(alloc->base, end)))
    {
        WARN("cannot watch %p-%p: %s\n", alloc->base, end, strerror(err));
        return err;
    }
    if (unix_prot == PROT_NONE || !(err = arm_pages(alloc, alloc->base, end))) return 0;
    ioctl(uffd_fd, UFFDIO_UNREGISTER, &range);
    return err;
}

/* Pages made accessible are protected first. */
static int uffd_set_protection(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    int err;

    if (unix_prot != PROT_NONE && (err = arm_pages(alloc, start, end))) return err;
    return mprotect(start, end - start, unix_prot) ? errno : 0;
}

/* The fresh mapping is not registered, and its pages are protected when
 * they are committed again. */
static int uffd_decommit(struct allocation *alloc, char *start, char *end)
{
    page_set_remove(&alloc->armed, page_index(alloc, start), page_index(alloc, end));
    return register_watched_range(start, end);
}

/* The first run of armed pages of [*first, last), or 0 when there is none. */
static int next_armed_run(const struct allocation *alloc, size_t *first, size_t last, char **start, char **end)
{
    size_t run_last = last;

    if (alloc->armed.count != alloc->pages)
    {
        *first = page_set_next(&alloc->armed, *first, last);
        run_last = page_set_next_missing(&alloc->armed, *first, last);
    }
    if (*first >= last) return 0;
    *start = page_address(alloc, *first);
    *end = page_address(alloc, run_last);
    *first = run_last;
    return 1;
}

/* The vector for a walk of [start, end) into out: no longer than the walk
 * can fill (a region per two pages, at most max_pages), which would cost
 * the kernel a larger bounce buffer, and no more than SMALL_BATCH, whose
 * buffer comes from the kernel's slab, until a walk returned regions. */
static size_t vector_length(const struct run_buffer *out, char *start, char *end, uintptr_t max_pages)
{
    size_t length = out->capacity - out->count, fill = (((size_t)(end - start) >> writewatch_page_shift) + 1) / 2;

    if (fill > max_pages) fill = max_pages;
    if (!out->count && fill > SMALL_BATCH) fill = SMALL_BATCH;
    return fill < length ? fill : length;
}

/* PAGEMAP_SCANs of the armed runs into out, resuming where a full vector or
 * max_pages stopped the walk. */
static int uffd_collect(struct allocation *alloc, char *start, char *end, int reset, uintptr_t *room,
                        struct run_buffer *out, char **next)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), first_run = out->count, i;
    uintptr_t max_pages = *room;
    /* max_pages binds only below the pages of the range; above them the
     * runs need no counting, and *room goes down by the range's pages */
    int counted = max_pages < last - first;
    char *run_start, *run_end, *walk_end;
    int count, err;

    if (!counted) *room -= last - first;
    *next = end;
    if (!next_armed_run(alloc, &first, last, &run_start, &run_end)) return 0;
    while (max_pages && out->count < out->capacity)
    {
        /* max_pages stops the walk, and the reset, at the caller's last entry */
        if ((err = scan_written_pages(run_start, run_end, reset, out->runs + out->count,
                                      vector_length(out, run_start, run_end, max_pages), max_pages, &count,
                                      &walk_end)))
            return scan_failed(alloc, run_start, walk_end, run_end, reset, err, out, first_run);
        if (counted)
            for (i = out->count; i < out->count + count; i++)
                max_pages -= (out->runs[i].end - out->runs[i].start) >> writewatch_page_shift;
        out->count += count;
        /* A walk stopped early ends at or past the last region it returned.
         * Past the kernel's own 512 regions a walk goes in passes, and when
         * the last pass reaches the end, walk_end keeps where that pass
         * began: the start of a region returned (Linux 6.18). */
        if (count && (uintptr_t)walk_end >= out->runs[out->count - 1].end && walk_end < run_end)
            run_start = walk_end;
        else if (!next_armed_run(alloc, &first, last, &run_start, &run_end))
        {
            run_start = end;
            break;
        }
    }
    if (counted) *room = max_pages;
    *next = run_start;
    return 0;
}

/* One walk an armed run, without an output vector: the kernel's fast path,
 * which protects every page it walks.  Watched ranges hold no huge page,
 * which such a walk could not split before Linux 6.17. */
static int uffd_reset(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);
    struct run_buffer none = { NULL, 0, 0 };
    char *run_start, *run_end, *walk_end;
    int count, err;

    while (next_armed_run(alloc, &first, last, &run_start, &run_end))
        if ((err = scan_written_pages(run_start, run_end, 1, NULL, 0, 0, &count, &walk_end)))
            return scan_failed(alloc, run_start, walk_end, run_end, 1, err, &none, 0);
    return 0;
}

static const struct backend uffd_backend =
{
    WRITEWATCH_BACKEND_UFFD,
    uffd_add,
    uffd_set_protection,
    uffd_decommit,
    uffd_collect,
    uffd_reset,
};

/* Records which kernel operation failed and closes what was opened. */
static int refuse(struct writewatch_info *info, enum writewatch_kernel_op op, int err)
{
    info->failed = op;
    info->err = err;
    if (pagemap_fd >= 0) close(pagemap_fd);
    if (uffd_fd >= 0) close(uffd_fd);
    pagemap_fd = uffd_fd = -1;
    return err;
}

/* Watches two probe pages, writes the second, and checks that a resetting
 * scan reports exactly it, and a second scan nothing. */
static int self_test(struct writewatch_info *info)
{
    size_t size = 2 * writewatch_page_size;
    enum writewatch_kernel_op op = WRITEWATCH_OP_REGISTER;
    struct page_region regions[4];
    int err, first, second;
    char *probe, *walk_end;

    probe = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED) return refuse(info, WRITEWATCH_OP_SELF_TEST, errno);
    if (!(err = register_watched_range(probe, probe + size)))
    {
        op = WRITEWATCH_OP_WRITEPROTECT;
        err = change_write_protection(probe, probe + size, UFFDIO_WRITEPROTECT_MODE_WP);
    }
    if (!err)
    {
        probe[writewatch_page_size] = 1;
        op = WRITEWATCH_OP_PAGEMAP_SCAN;
        if (!(err = scan_written_pages(probe, probe + size, 1, regions, 4, 0, &first, &walk_end)))
            err = scan_written_pages(probe, probe + size, 1, regions + 1, 3, 0, &second, &walk_end);
    }
    if (!err && (first != 1 || second || regions[0].start != (uintptr_t)(probe + writewatch_page_size) ||
                 regions[0].end != (uintptr_t)(probe + size)))
    {
        op = WRITEWATCH_OP_SELF_TEST;
        err = EIO;
    }
    munmap(probe, size);
    return err ? refuse(info, op, err) : 0;
}

static int uffd_init(struct writewatch_info *info)
{
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
    int err;

    /* user-mode-only faults need no privilege, whatever vm.unprivileged_userfaultfd says */
    if (injected_error(WRITEWATCH_OP_USERFAULTFD) ||
        (uffd_fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)) < 0)
        return refuse(info, WRITEWATCH_OP_USERFAULTFD, errno);
    /* fails when the kernel lacks a feature asked for */
    if ((err = kernel_ioctl(WRITEWATCH_OP_UFFDIO_API, uffd_fd, UFFDIO_API, &api, NULL)))
        return refuse(info, WRITEWATCH_OP_UFFDIO_API, err);
    if (injected_error(WRITEWATCH_OP_OPEN_PAGEMAP) ||
        (pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
        return refuse(info, WRITEWATCH_OP_OPEN_PAGEMAP, errno);
    return self_test(info);
}

#else  /* __linux__ */

static const struct backend uffd_backend;

static int uffd_init(struct writewatch_info *info)
{
    info->failed = WRITEWATCH_OP_USERFAULTFD;
    return info->err = ENOSYS;
}

#endif  /* __linux__ */

/* The fallback backend, for kernels or sandboxes without userfaultfd WP-async:
 * clean pages lose PROT_WRITE; the first write faults, and the host's
 * signal handler gives the page its protection back and marks it written,
 * in that order, so a racing write either faults or was counted.  Each run
 * of written pages is a mapping of its own: past vm.max_map_count, pages
 * stay writable and count as written, over-reporting rather than faulting.
 */

static int is_written(const struct allocation *alloc, size_t index)
{
    return alloc->written.count && (alloc->written.bits[index / 64] >> (index % 64)) & 1;
}

/* The protection the host set. */
static int host_prot(const struct allocation *alloc, size_t index)
{
    return alloc->prot[index];
}

/* The host's protection, without write access while the page is clean. */
static int tracking_prot(const struct allocation *alloc, size_t index)
{
    if (is_written(alloc, index)) return alloc->prot[index];
    return alloc->prot[index] & ~PROT_WRITE;
}

static int protect_run(const struct allocation *alloc, size_t first, size_t last, int unix_prot)
{
    if (!mprotect(page_address(alloc, first), (last - first) << writewatch_page_shift, unix_prot)) return 0;
    WARN("mprotect %p-%p %#x: %s\n", page_address(alloc, first), page_address(alloc, last), unix_prot,
         strerror(errno));
    return errno;
}

/* Gives the pages of [first, last) the protection prot_of says, one
 * mprotect a run. */
static int apply_protection(const struct allocation *alloc, size_t first, size_t last,
                            int (*prot_of)(const struct allocation *, size_t))
{
    int err;

    while (first < last)
    {
        int prot = prot_of(alloc, first);
        size_t end = first + 1;

        while (end < last && prot_of(alloc, end) == prot) end++;
        if ((err = protect_run(alloc, first, end, prot))) return err;
        first = end;
    }
    return 0;
}

/* Makes the written pages of [first, last) clean, run by run: write access
 * goes first, then the bits.  A run whose protection cannot change stays
 * written, an over-report. */
static void clear_written(struct allocation *alloc, size_t first, size_t last)
{
    while ((first = page_set_next(&alloc->written, first, last)) < last)
    {
        int prot = alloc->prot[first];
        size_t end = first + 1;

        while (end < last && is_written(alloc, end) && alloc->prot[end] == prot) end++;
        if (!protect_run(alloc, first, end, prot & ~PROT_WRITE)) page_set_remove(&alloc->written, first, end);
        first = end;
    }
}

static int mprotect_add(struct allocation *alloc, int unix_prot)
{
    int err;

    /* a reservation's protections stay untouched memory */
    if (!(alloc->prot = calloc(alloc->pages, 1))) return ENOMEM;
    if ((err = page_set_init(&alloc->written, alloc))) return err;
    if (unix_prot != PROT_NONE) memset(alloc->prot, unix_prot, alloc->pages);
    if (!(unix_prot & PROT_WRITE) || !(err = protect_run(alloc, 0, alloc->pages, unix_prot & ~PROT_WRITE)))
        return 0;
    /* leave the memory as the host mapped it */
    mprotect(alloc->base, alloc->size, unix_prot);
    return err;
}

static int mprotect_set_protection(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);

    memset(alloc->prot + first, unix_prot, last - first);
    return apply_protection(alloc, first, last, tracking_prot);
}

/* The host mapped fresh inaccessible pages: nothing on them is written. */
static int mprotect_decommit(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);

    page_set_remove(&alloc->written, first, last);
    memset(alloc->prot + first, PROT_NONE, last - first);
    return 0;
}

static int mprotect_collect(struct allocation *alloc, char *start, char *end, int reset, uintptr_t *room,
                            struct run_buffer *out, char **next)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), index = first;

    while (*room && (index = page_set_next(&alloc->written, index, last)) < last)
    {
        size_t run_end = page_set_next_missing(&alloc->written, index, last);

        if (run_end - index > *room) run_end = index + *room;
        if (!run_buffer_append(out, page_address(alloc, index), page_address(alloc, run_end))) break;
        *room -= run_end - index;
        index = run_end;
    }
    /* every written page before index is in out */
    *next = page_address(alloc, index);
    if (reset) clear_written(alloc, first, index);
    return 0;
}

static int mprotect_reset(struct allocation *alloc, char *start, char *end)
{
    clear_written(alloc, page_index(alloc, start), page_index(alloc, end));
    return 0;
}

static const struct backend mprotect_backend =
{
    WRITEWATCH_BACKEND_MPROTECT,
    mprotect_add,
    mprotect_set_protection,
    mprotect_decommit,
    mprotect_collect,
    mprotect_reset,
};

static int mprotect_handle_fault(struct allocation *alloc, char *page)
{
    size_t index = page_index(alloc, page), first = index, last = index + 1;
    int prot = alloc->prot[index];

    if (!(prot & PROT_WRITE)) return 0;
    /* another thread may have resolved it first: the write can be retried */
    if (is_written(alloc, index)) return 1;
    if (protect_run(alloc, first, last, prot))
    {
        /* Splitting the mapping failed: give the whole mapping (the clean
         * pages around of the same protection) its protection back, which
         * needs no split, and call every page of it written. */
        while (first && !is_written(alloc, first - 1) && alloc->prot[first - 1] == prot) first--;
        while (last < alloc->pages && !is_written(alloc, last) && alloc->prot[last] == prot) last++;
        WARN("over-reporting %p-%p: cannot split the mapping\n", page_address(alloc, first),
             page_address(alloc, last));
        if (protect_run(alloc, first, last, prot)) return 0;
    }
    page_set_add(&alloc->written, first, last);
    return 1;
}

/* Writes by other threads to the lent pages go unseen until the call
 * completes, as with Wine 8.0's own fallback. */
static void mprotect_lend_buffer(struct allocation *alloc, char *start, char *end, char *written_end)
{
    (void)written_end;
    apply_protection(alloc, page_index(alloc, start), page_index(alloc, end), host_prot);
}

static void mprotect_buffer_written(struct allocation *alloc, char *start, char *end, char *written_end)
{
    size_t index, first = page_index(alloc, start), written = page_index(alloc, written_end + writewatch_page_size - 1);

    for (index = first; index < written; index++)
        if (alloc->prot[index] & PROT_WRITE) page_set_add(&alloc->written, index, index + 1);
    apply_protection(alloc, first, page_index(alloc, end), tracking_prot);
}

/* Backends */

const char *writewatch_backend_name(enum writewatch_backend backend)
{
    static const char * const names[] = { "none", "uffd", "mprotect" };

    return names[backend];
}

/* The backend waits for the first watched allocation: choosing it costs
 * system calls and a self-test. */
void writewatch_init(const struct writewatch_lock *lock_ops)
{
    writewatch_page_size = sysconf(_SC_PAGESIZE);
    writewatch_page_shift = __builtin_ctzl(writewatch_page_size);
    host_lock = lock_ops;
}

/* Chooses the backend once, with the lock held.  Leaves default_backend
 * NULL only when WRITEWATCH_BACKEND=uffd and the kernel's is unavailable. */
static void choose_backend(void)
{
    static int chosen;
    const char *request = getenv("WRITEWATCH_BACKEND"), *name;

    if (chosen) return;
    chosen = 1;
    if (!request) request = "auto";
    if (strcmp(request, "auto") && strcmp(request, "uffd") && strcmp(request, "mprotect"))
        WARN("unknown WRITEWATCH_BACKEND=%s, using auto\n", request);

    if (!strcmp(request, "mprotect"))
        default_backend = &mprotect_backend;
    else if (!uffd_init(&init_info))
        default_backend = &uffd_backend;
    else if (strcmp(request, "uffd"))
        default_backend = &mprotect_backend;

    init_info.backend = default_backend ? default_backend->id : WRITEWATCH_BACKEND_NONE;
    name = writewatch_backend_name(init_info.backend);
    if (!init_info.failed) TRACE("%s: WRITEWATCH_BACKEND=%s\n", name, request);
    else if (default_backend)
        WARN("%s: kernel operation %d failed: %s\n", name, init_info.failed, strerror(init_info.err));
    else
        ERR("%s: WRITEWATCH_BACKEND=uffd, but kernel operation %d failed: %s\n", name, init_info.failed,
            strerror(init_info.err));
}

void writewatch_get_info(struct writewatch_info *info)
{
    sigset_t state;

    host_lock->enter(&state);
    choose_backend();
    *info = init_info;
    host_lock->leave(&state);
}

/* The list of allocations */

/* Index of the first allocation whose end lies above addr. */
static size_t find_allocation_index(const char *addr)
{
    size_t low = 0, high = allocation_count;

    while (low < high)
    {
        size_t mid = (low + high) / 2;
        const struct allocation *alloc = allocations[mid];

        if ((size_t)(addr - alloc->base) < alloc->size && addr >= alloc->base) return mid;
        if (addr < alloc->base) high = mid;
        else low = mid + 1;
    }
    return low;
}

static struct allocation *find_allocation(const char *addr)
{
    size_t index = find_allocation_index(addr);

    if (index == allocation_count || addr < allocations[index]->base) return NULL;
    return allocations[index];
}

/* The allocation that holds all of [start, end), if any. */
static struct allocation *find_allocation_for_range(const char *start, const char *end)
{
    struct allocation *alloc = find_allocation(start);

    if (!alloc || end > alloc->base + alloc->size) return NULL;
    return alloc;
}

static int insert_allocation(struct allocation *alloc)
{
    size_t index = find_allocation_index(alloc->base);

    if (allocation_count == allocation_capacity)
    {
        size_t capacity = allocation_capacity ? allocation_capacity * 2 : 16;
        struct allocation **grown = realloc(allocations, capacity * sizeof(*grown));

        if (!grown) return ENOMEM;
        allocations = grown;
        allocation_capacity = capacity;
    }
    memmove(allocations + index + 1, allocations + index, (allocation_count - index) * sizeof(*allocations));
    allocations[index] = alloc;
    allocation_count++;
    return 0;
}

static void free_allocation(struct allocation *alloc)
{
    free(alloc->latched.bits);
    free(alloc->armed.bits);
    free(alloc->written.bits);
    free(alloc->prot);
    free(alloc);
}

/* Rounds a caller's range to whole pages; fails on empty or wrapping ranges. */
static int round_range(const void *base, size_t size, char **start, char **end)
{
    uintptr_t first = (uintptr_t)base & ~(writewatch_page_size - 1);
    uintptr_t last = (uintptr_t)base + size - 1;

    if (!writewatch_page_size || !size || last < (uintptr_t)base) return 0;
    last |= writewatch_page_size - 1;
    if (last == UINTPTR_MAX) return 0;
    *start = (char *)first;
    *end = (char *)last + 1;
    return 1;
}

static int is_aligned(const void *ptr, size_t alignment)
{
    return !((uintptr_t)ptr % alignment);
}

static int host_range_is_valid(const void *base, size_t size)
{
    uintptr_t mask = writewatch_page_size - 1;

    if (!writewatch_page_size || !size) return 0;
    if (((uintptr_t)base | size) & mask) return 0;
    return (uintptr_t)base + size > (uintptr_t)base;
}

/* Watches with the default backend, or with the fallback where the kernel
 * backend refuses the mapping, and lists the allocation. */
static int watch_allocation(struct allocation *alloc, int unix_prot)
{
    int err;

    if (!(alloc->backend = default_backend)) return ENOSYS;
    if ((err = default_backend->add(alloc, unix_prot)) && default_backend != &mprotect_backend)
    {
        WARN("kernel backend refused %p-%p (%s), using the mprotect backend for it\n", alloc->base,
             alloc->base + alloc->size, strerror(err));
        alloc->backend = &mprotect_backend;
        err = mprotect_backend.add(alloc, unix_prot);
    }
    return err ? err : insert_allocation(alloc);
}

writewatch_status writewatch_add_allocation(void *base, size_t size, int unix_prot)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    char *end = (char *)base + size;
    sigset_t state;

    if (!host_range_is_valid(base, size)) return status;
    if (!(alloc = calloc(1, sizeof(*alloc)))) return WRITEWATCH_STATUS_NO_MEMORY;
    alloc->base = base;
    alloc->size = size;
    alloc->pages = size >> writewatch_page_shift;

    host_lock->enter(&state);
    choose_backend();
    /* an allocation inside [base, end) lies between the two */
    if (find_allocation(end - 1) || find_allocation_index(base) != find_allocation_index(end - 1))
        ERR("%p-%p overlaps a watched allocation\n", base, end);
    else
        status = status_from_errno(watch_allocation(alloc, unix_prot));
    host_lock->leave(&state);
    if (status) free_allocation(alloc);
    else TRACE("%p-%p prot %#x\n", base, end, unix_prot);
    return status;
}

/* The host unmapped the allocation, and the kernel's registration with it. */
void writewatch_remove_allocation(void *base)
{
    sigset_t state;
    size_t index;

    TRACE("%p\n", base);
    host_lock->enter(&state);
    index = find_allocation_index(base);
    if (index < allocation_count && allocations[index]->base == base)
    {
        free_allocation(allocations[index]);
        allocation_count--;
        memmove(allocations + index, allocations + index + 1, (allocation_count - index) * sizeof(*allocations));
    }
    else WARN("%p is not a watched allocation\n", base);
    host_lock->leave(&state);
}

/* The host asks with its own lock held, which every change to the list
 * takes: in a program that watches nothing, asking costs one load. */
int writewatch_is_watched(const void *addr)
{
    return allocation_count && find_allocation(addr) != NULL;
}

/* Gathering written pages */

/* Gathers the run of latched pages at first, up to *room of them: it is
 * reported whole, whether the backend still holds its pages or not (a
 * decommit dropped them); with reset, they are reset and the run forgotten. */
static int gather_latched_run(struct allocation *alloc, size_t first, size_t last, int reset, uintptr_t *room,
                              struct run_buffer *out, char **next)
{
    size_t run_last = page_set_next_missing(&alloc->latched, first, last);
    uintptr_t run_room;
    struct run_buffer rest;
    int err;

    if (run_last - first > *room) run_last = first + *room;
    run_room = run_last - first;
    *next = page_address(alloc, run_last);
    /* the backend's runs lie inside the run reported, in out's free end */
    run_buffer_init(&rest, out->runs + out->count, out->capacity - out->count);
    if (reset && (err = alloc->backend->collect(alloc, page_address(alloc, first), *next, 1, &run_room, &rest,
                                                next)))
        return err;
    run_buffer_append(out, page_address(alloc, first), *next);
    *room -= page_index(alloc, *next) - first;
    if (reset) page_set_remove(&alloc->latched, first, page_index(alloc, *next));
    return 0;
}

/* Gathers into out the first written pages of [start, end), the backend's
 * and the latched ones in order, at most *room, as many runs as out holds;
 * with reset, resets exactly those.  *next is where the next batch
 * starts.  On failure, out holds what came before the failing part. */
static int gather_pages(struct allocation *alloc, char *start, char *end, int reset, uintptr_t *room,
                        struct run_buffer *out, char **next)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), latched;
    int err = 0;

    while (!err && first < last && *room && out->count < out->capacity)
    {
        if ((latched = page_set_next(&alloc->latched, first, last)) == first)
            err = gather_latched_run(alloc, first, last, reset, room, out, next);
        else
            err = alloc->backend->collect(alloc, page_address(alloc, first), page_address(alloc, latched), reset,
                                          room, out, next);
        if (!err) first = page_index(alloc, *next);
    }
    *next = page_address(alloc, first);
    return err;
}

/* Host changes: each runs with the lock held, on a range inside one
 * allocation. */

static int set_protection(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    return alloc->backend->set_protection(alloc, start, end, unix_prot);
}

/* VirtualProtect latches the pages written so far, a batch at a time. */
static int latch_written_pages(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    struct page_region storage[SMALL_BATCH];
    uintptr_t room = UINTPTR_MAX;
    struct run_buffer found;
    size_t i;
    int err;

    (void)unix_prot;
    while (start < end)
    {
        run_buffer_init(&found, storage, SMALL_BATCH);
        if ((err = alloc->backend->collect(alloc, start, end, 0, &room, &found, &start))) return err;
        if (found.count && (err = page_set_init(&alloc->latched, alloc))) return err;
        for (i = 0; i < found.count; i++)
            page_set_add(&alloc->latched, page_index(alloc, (char *)(uintptr_t)found.runs[i].start),
                         page_index(alloc, (char *)(uintptr_t)found.runs[i].end));
    }
    return 0;
}

static int decommit_pages(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    (void)unix_prot;
    return alloc->backend->decommit(alloc, start, end);
}

/* Applies a host change to the allocation that holds its page-aligned range. */
static writewatch_status apply_host_change(int (*change)(struct allocation *, char *, char *, int), void *base,
                                           size_t size, int unix_prot)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    char *start = base, *end = start + size;
    sigset_t state;

    TRACE("%p-%p prot %#x\n", start, end, unix_prot);
    if (!host_range_is_valid(base, size)) return status;
    host_lock->enter(&state);
    if ((alloc = find_allocation_for_range(start, end)))
        status = status_from_errno(change(alloc, start, end, unix_prot));
    else WARN("%p-%p is not inside one watched allocation\n", start, end);
    host_lock->leave(&state);
    return status;
}

writewatch_status writewatch_set_protection(void *base, size_t size, int unix_prot)
{
    return apply_host_change(set_protection, base, size, unix_prot);
}

writewatch_status writewatch_latch(void *base, size_t size)
{
    return apply_host_change(latch_written_pages, base, size, 0);
}

writewatch_status writewatch_decommit(void *base, size_t size)
{
    return apply_host_change(decommit_pages, base, size, 0);
}

/* Queries */

/* Windows' ProbeForWrite: a store to every page of [ptr, ptr + size), so
 * that memory the caller cannot write faults here, before anything is
 * reset and with no lock held.  The store changes nothing, even when other
 * threads write the same byte meanwhile: an atomic add of zero, spelled out
 * on x86, where compilers may turn an idempotent atomic into a plain load. */
static void probe_for_write(void *ptr, size_t size)
{
    char *byte = ptr, *end = byte + size;

    for (; byte < end; byte = (char *)(((uintptr_t)byte | (writewatch_page_size - 1)) + 1))
#if defined(__i386__) || defined(__x86_64__)
        __asm__ __volatile__( "lock addb $0, %0" : "+m" (*byte) );
#else
        __atomic_fetch_add(byte, 0, __ATOMIC_RELAXED);
#endif
}

static uintptr_t copy_out(const struct run_buffer *runs, void **addresses)
{
    uintptr_t count = 0, page, end, size = writewatch_page_size;
    size_t i;

    for (i = 0; i < runs->count; i++)
    {
        end = runs->runs[i].end;
        for (page = runs->runs[i].start; page < end; page += size) addresses[count++] = (void *)page;
    }
    return count;
}

/* A query under way: what is left of its range, the caller's array and how
 * much of it holds the answer. */
struct query
{
    int reset;
    char *start, *end;
    void **addresses;
    uintptr_t room, done;
    int err;
    enum writewatch_backend backend;  /* NONE: the range is not inside one watched allocation */
};

/* Answers one batch, gathered into storage under the lock and copied out
 * without it; returns nonzero when there is more to answer.  Another
 * thread may release the allocation between two batches: what was
 * reported before stays reported. */
static int answer_batch(struct query *query, struct page_region *storage, size_t size)
{
    uintptr_t room = query->room - query->done;
    struct allocation *alloc;
    struct run_buffer runs;
    sigset_t state;

    run_buffer_init(&runs, storage, size);
    host_lock->enter(&state);
    if ((alloc = find_allocation_for_range(query->start, query->end)))
    {
        query->backend = alloc->backend->id;
        query->err = gather_pages(alloc, query->start, query->end, query->reset, &room, &runs, &query->start);
    }
    host_lock->leave(&state);
    query->done += copy_out(&runs, query->addresses + query->done);
    return alloc && !query->err && query->start < query->end && query->done < query->room;
}

/* A query whose answer may hold more than SMALL_BATCH runs: only such
 * queries enter this frame, and touch its stack (with
 * -fstack-clash-protection, entering a frame touches every page of it). */
static void __attribute__((noinline)) answer_large_query(struct query *query)
{
    struct page_region storage[RUN_BATCH];

    while (answer_batch(query, storage, RUN_BATCH));
}

writewatch_status writewatch_get_write_watch(uint32_t flags, void *base, size_t size, void **addresses,
                                             uintptr_t *count, uint32_t *granularity)
{
    struct query query = { .reset = flags & WRITEWATCH_FLAG_RESET, .addresses = addresses };
    struct page_region storage[SMALL_BATCH];

    /* Wine 8.0's order of checks, which its conformance tests expect, with
     * Windows' alignment checks and probes of the output pointers. */
    if (!count || !granularity) return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if (!is_aligned(count, sizeof(*count)) || !is_aligned(granularity, sizeof(*granularity)))
        return WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT;
    if (!(query.room = *count) || !size) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (flags & ~WRITEWATCH_FLAG_RESET) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (!addresses) return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if (!is_aligned(addresses, sizeof(*addresses))) return WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT;
    if (query.room > (UINTPTR_MAX - (uintptr_t)addresses) / sizeof(*addresses))
        return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if (!round_range(base, size, &query.start, &query.end)) return WRITEWATCH_STATUS_INVALID_PARAMETER;

    probe_for_write(count, sizeof(*count));
    probe_for_write(granularity, sizeof(*granularity));
    probe_for_write(addresses, query.room * sizeof(*addresses));

    TRACE("%#x %p-%p %p %lu\n", flags, query.start, query.end, addresses, (unsigned long)query.room);
    /* an answer holds at most a run per two pages, and no more than the array */
    if ((((uintptr_t)(query.end - query.start) >> writewatch_page_shift) + 1) / 2 > SMALL_BATCH &&
        query.room > SMALL_BATCH)
        answer_large_query(&query);
    else while (answer_batch(&query, storage, SMALL_BATCH));

    /* a batch that fails gave back what it reset: the pages copied out
     * before it are the answer */
    if (query.backend == WRITEWATCH_BACKEND_NONE) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (query.err && !query.done) return status_from_errno(query.err);
    if (query.err) WARN("answering %lu pages after %s\n", (unsigned long)query.done, strerror(query.err));
    *count = query.done;
    *granularity = writewatch_page_size;
    TRACE("returning %lu pages (%s)\n", (unsigned long)query.done, writewatch_backend_name(query.backend));
    return WRITEWATCH_STATUS_SUCCESS;
}

writewatch_status writewatch_reset_write_watch(void *base, size_t size)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    char *start, *end;
    sigset_t state;

    if (!round_range(base, size, &start, &end)) return status;
    TRACE("%p-%p\n", start, end);
    host_lock->enter(&state);
    if ((alloc = find_allocation_for_range(start, end)) &&
        !(status = status_from_errno(alloc->backend->reset(alloc, start, end))))
        page_set_remove(&alloc->latched, page_index(alloc, start), page_index(alloc, end));
    host_lock->leave(&state);
    return status;
}

/* The fallback's entries */

int writewatch_handle_fault(void *addr)
{
    char *page = (char *)((uintptr_t)addr & ~(writewatch_page_size - 1));
    struct allocation *alloc;
    sigset_t state;
    int handled = 0;

    if (!__atomic_load_n(&allocation_count, __ATOMIC_RELAXED)) return 0;
    host_lock->enter(&state);
    if ((alloc = find_allocation(page)) && alloc->backend == &mprotect_backend)
        handled = mprotect_handle_fault(alloc, page);
    host_lock->leave(&state);
    return handled;
}

/* Applies apply to the part of a system call's buffer in each fallback
 * allocation it overlaps; returns nonzero when there was any. */
static int apply_to_buffer(void (*apply)(struct allocation *, char *, char *, char *), void *base, size_t size,
                           size_t written)
{
    char *start, *end, *written_end;
    int applied = 0;
    sigset_t state;
    size_t index;

    /* a program that watches nothing takes no lock for its system calls */
    if (!__atomic_load_n(&allocation_count, __ATOMIC_RELAXED)) return 0;
    if (!round_range(base, size, &start, &end)) return 0;
    /* nothing written marks no page, even when the buffer starts mid-page */
    written_end = written ? (char *)base + (written < size ? written : size) : start;
    host_lock->enter(&state);
    for (index = find_allocation_index(start); index < allocation_count; index++)
    {
        struct allocation *alloc = allocations[index];
        char *first = start > alloc->base ? start : alloc->base;
        char *last = end < alloc->base + alloc->size ? end : alloc->base + alloc->size;

        if (alloc->base >= end) break;
        if (alloc->backend != &mprotect_backend) continue;
        apply(alloc, first, last, written_end < first ? first : written_end < last ? written_end : last);
        applied = 1;
    }
    host_lock->leave(&state);
    return applied;
}

int writewatch_lend_buffer(void *base, size_t size)
{
    TRACE("%p-%p\n", base, (char *)base + size);
    return apply_to_buffer(mprotect_lend_buffer, base, size, 0);
}

void writewatch_buffer_written(void *base, size_t size, size_t written)
{
    TRACE("%p-%p written %lu\n", base, (char *)base + size, (unsigned long)written);
    apply_to_buffer(mprotect_buffer_written, base, size, written);
}
