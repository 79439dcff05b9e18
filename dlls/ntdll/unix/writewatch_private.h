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

/* A write-watched allocation, as the host registered it. */
struct allocation
{
    char *base;
    size_t size;
    size_t pages;
    const struct backend *backend;
    /* Pages whose written state VirtualProtect latched: they stay reported
     * across decommit until reset.  Allocated on first use. */
    uint8_t *latched;
    /* Fallback backend only: written pages and the protection the host set. */
    uint8_t *written;
    uint8_t *prot;
};

/* For backend operations that do not need every argument. */
#define WW_UNUSED __attribute__((unused))

/* A backend tracks which pages of an allocation were written.  Ranges are
 * page aligned and inside the allocation; the core holds its lock.  The last
 * four operations may be NULL when a backend has nothing to do there. */
struct backend
{
    const char *name;
    enum writewatch_backend id;
    /* start tracking; every page clean */
    writewatch_status (*add)(struct allocation *alloc, int unix_prot);
    writewatch_status (*set_protection)(struct allocation *alloc, char *start, char *end, int unix_prot);
    /* the host replaced [start, end) by a fresh inaccessible mapping */
    writewatch_status (*decommit)(struct allocation *alloc, char *start, char *end);
    /* Store written pages of [start, end) in ascending order at addresses[*pos],
     * up to room; with reset, reset exactly the pages stored.  *next is end
     * when the range was exhausted, else where to resume. */
    writewatch_status (*collect)(struct allocation *alloc, char *start, char *end, int reset,
                                 void **addresses, uintptr_t room, uintptr_t *pos, char **next);
    writewatch_status (*reset)(struct allocation *alloc, char *start, char *end);
    void (*remove)(struct allocation *alloc);
    int (*handle_fault)(struct allocation *alloc, char *page);
    /* lend write access to [start, end) for a system call */
    void (*prepare_buffer)(struct allocation *alloc, char *start, char *end);
    /* the call wrote up to written_end, inside [start, end): mark the pages
     * it touched, take back the rest */
    void (*complete_buffer)(struct allocation *alloc, char *start, char *end, char *written_end);
};

extern size_t writewatch_page_size;

/* Kernel backend.  uffd_backend_init() fills info and returns nonzero when
 * userfaultfd WP-async and PAGEMAP_SCAN both work. */
extern const struct backend writewatch_uffd_backend;
int writewatch_uffd_init(struct writewatch_info *info);

/* Fallback backend: clean pages lose PROT_WRITE, the host reports faults. */
extern const struct backend writewatch_mprotect_backend;

static inline size_t page_index(const struct allocation *alloc, const char *addr)
{
    return (size_t)(addr - alloc->base) / writewatch_page_size;
}

static inline int bitmap_test(const uint8_t *bitmap, size_t index)
{
    return (bitmap[index / 8] >> (index % 8)) & 1;
}

static inline void bitmap_set(uint8_t *bitmap, size_t index)
{
    bitmap[index / 8] |= 1 << (index % 8);
}

static inline void bitmap_clear(uint8_t *bitmap, size_t index)
{
    bitmap[index / 8] &= ~(1 << (index % 8));
}

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
    WRITEWATCH_OP_OPEN_PAGEMAP,
    WRITEWATCH_OP_REGISTER,
    WRITEWATCH_OP_WRITEPROTECT,
    WRITEWATCH_OP_PAGEMAP_SCAN,
    WRITEWATCH_OP_COUNT
};
void writewatch_inject_error(enum writewatch_kernel_op op, int err, unsigned int skip);
int writewatch_injected_error(enum writewatch_kernel_op op);
#endif

#endif /* WRITEWATCH_PRIVATE_H */
