/*
 * writewatch: definitions shared by the module's core and its backends.
 */

#ifndef WRITEWATCH_PRIVATE_H
#define WRITEWATCH_PRIVATE_H

#include <errno.h>
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
#define PAGE_IS_WPALLOWED     (1 << 0)
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

/* A set of an allocation's pages: a bitmap of one bit per page, 64 pages a
 * word, allocated on first use, and how many pages it holds, so that asking
 * an empty set costs nothing. */
struct page_set
{
    uint64_t *bits;
    size_t count;
};

/* A write-watched allocation, as the host registered it. */
struct allocation
{
    char *base;
    size_t size;
    size_t pages;
    const struct backend *backend;
    /* Pages whose written state VirtualProtect latched: they stay reported
     * across decommit until reset. */
    struct page_set latched;
    /* Written pages the backend already reset but nobody was told of yet
     * (past a short array's end, or in a call that failed): reported until
     * reset, cleared by decommit like any written page. */
    struct page_set kept;
    /* Kernel backend only: pages write-protected since the host made them
     * accessible; never-committed pages are not, and cost no page tables. */
    struct page_set armed;
    /* Fallback backend only: written pages and the protection the host set. */
    struct page_set written;
    uint8_t *prot;
};

/* A batch of runs of pages, in ascending order, as PAGEMAP_SCAN returns
 * them, in a bounded buffer on the caller's stack: no scan needs memory in
 * proportion to its range.  An answer that cannot hold more than
 * SMALL_BATCH runs (8 KiB), by its range or by the caller's array, is
 * gathered in that many, so that it touches little stack; a larger one in
 * batches of RUN_BATCH regions (48 KiB), each gathered under one hold of
 * the lock.  The kernel's bounce buffer for a walk of up to SMALL_BATCH
 * regions comes from its slab; past 8 KiB it comes from the page
 * allocator, once per PAGEMAP_SCAN. */
#define SMALL_BATCH (8192 / sizeof(struct page_region))
#define RUN_BATCH 2048

struct run_buffer
{
    size_t count;
    size_t capacity;
    struct page_region *runs;
    size_t size;  /* of the storage, in regions */
};

static inline void run_buffer_init(struct run_buffer *buf, struct page_region *storage, size_t size)
{
    buf->count = 0;
    buf->capacity = buf->size = size;
    buf->runs = storage;
}

/* Empties buf for a batch of at most capacity regions of its storage. */
static inline void run_buffer_empty(struct run_buffer *buf, size_t capacity)
{
    buf->count = 0;
    buf->capacity = capacity;
}

/* For backend operations that do not need every argument. */
#define WW_UNUSED __attribute__((unused))

/* A backend tracks which pages of an allocation were written.  Ranges are
 * page aligned and inside the allocation; the core holds the lock.  The
 * last four operations may be NULL when a backend has nothing to do there. */
struct backend
{
    const char *name;
    enum writewatch_backend id;
    /* start tracking; every page clean */
    writewatch_status (*add)(struct allocation *alloc, int unix_prot);
    writewatch_status (*set_protection)(struct allocation *alloc, char *start, char *end, int unix_prot);
    /* the host replaced [start, end) by a fresh inaccessible mapping */
    writewatch_status (*decommit)(struct allocation *alloc, char *start, char *end);
    /* Appends to the empty out the first written pages of [start, end), at
     * most max_pages, as many runs as out holds; with reset, resets exactly
     * those.  *next is where the pages not gathered start: end when out
     * took them all.  On failure, out holds every page that was reset. */
    writewatch_status (*collect)(struct allocation *alloc, char *start, char *end, int reset,
                                 uintptr_t max_pages, struct run_buffer *out, char **next);
    /* every page of [start, end) clean */
    writewatch_status (*reset)(struct allocation *alloc, char *start, char *end);
    void (*remove)(struct allocation *alloc);
    int (*handle_fault)(struct allocation *alloc, char *page);
    /* lend write access to [start, end) for a system call; nonzero when
     * there was anything to lend */
    int (*lend_buffer)(struct allocation *alloc, char *start, char *end);
    /* [start, written_end) was written behind the tracking, inside
     * [start, end): mark its pages, take back the rest */
    void (*buffer_written)(struct allocation *alloc, char *start, char *end, char *written_end);
};

extern size_t writewatch_page_size;
/* log2 of the page size: page counts are shifts, not divisions */
extern unsigned int writewatch_page_shift;

/* Kernel backend.  writewatch_uffd_init() fills info and returns nonzero
 * when userfaultfd WP-async and PAGEMAP_SCAN both work. */
extern const struct backend writewatch_uffd_backend;
int writewatch_uffd_init(struct writewatch_info *info);

/* Fallback backend: clean pages lose PROT_WRITE, the host reports faults. */
extern const struct backend writewatch_mprotect_backend;

static inline size_t page_index(const struct allocation *alloc, const char *addr)
{
    return (size_t)(addr - alloc->base) >> writewatch_page_shift;
}

static inline char *page_address(const struct allocation *alloc, size_t index)
{
    return alloc->base + (index << writewatch_page_shift);
}

static inline size_t run_pages(const struct page_region *run)
{
    return (size_t)(run->end - run->start) >> writewatch_page_shift;
}

/* Page sets and run buffers, shared by the core and the backends. */
/* Makes room for the allocation's pages; returns 0 when out of memory. */
int page_set_init(struct page_set *set, const struct allocation *alloc);
int page_set_has(const struct page_set *set, size_t index);
/* Adds [first, last) to an initialised set, removes it from any set. */
void page_set_add(struct page_set *set, size_t first, size_t last);
void page_set_remove(struct page_set *set, size_t first, size_t last);
/* The first page of a or b in [first, last), or last. */
size_t page_set_next(const struct page_set *a, const struct page_set *b, size_t first, size_t last);
/* The first page of [first, last) not in set, or last. */
size_t page_set_next_missing(const struct page_set *set, size_t first, size_t last);

/* Appends [start, end) to buf, joining it to the last run when they touch;
 * returns 0 when buf is full. */
int run_buffer_append(struct run_buffer *buf, char *start, char *end);

/* Kernel failures are the module's, never the caller's bad parameters. */
static inline writewatch_status status_from_errno(int err)
{
    switch (err)
    {
    case 0: return WRITEWATCH_STATUS_SUCCESS;
    case ENOMEM: return WRITEWATCH_STATUS_NO_MEMORY;
    case ENOSYS:
    case ENOTTY: return WRITEWATCH_STATUS_NOT_SUPPORTED;
    default: return WRITEWATCH_STATUS_UNSUCCESSFUL;
    }
}

#ifdef WRITEWATCH_FAULT_INJECTION
/* Test seam: make a kernel operation fail with err once, after it has
 * succeeded skip more times. */
enum writewatch_kernel_op
{
    WRITEWATCH_OP_USERFAULTFD,
    WRITEWATCH_OP_UFFDIO_API,
    WRITEWATCH_OP_OPEN_PAGEMAP,
    WRITEWATCH_OP_REGISTER,
    WRITEWATCH_OP_WRITEPROTECT,
    WRITEWATCH_OP_PAGEMAP_SCAN,
    WRITEWATCH_OP_COUNT
};
void writewatch_inject_error(enum writewatch_kernel_op op, int err, unsigned int skip);
int writewatch_injected_error(enum writewatch_kernel_op op);
/* Test seam: which walk ResetWriteWatch uses on the kernel backend;
 * returns the previous choice. */
int writewatch_reset_without_vec(int enable);
#endif

#endif /* WRITEWATCH_PRIVATE_H */
