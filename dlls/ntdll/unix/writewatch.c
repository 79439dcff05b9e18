/*
 * writewatch: the Windows write-watch API on top of a tracking backend.
 *
 * The core keeps the record of write-watched allocations, validates requests
 * with Windows' rules and status codes, and merges the backend's written
 * pages with the pages VirtualProtect latched.
 */

#if 0
#pragma makedep unix
#endif

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "writewatch_private.h"
#include "wine/debug.h"

WINE_DEFAULT_DEBUG_CHANNEL(writewatch);

size_t writewatch_page_size;

/* Recursive: under the fallback, the module's own stores into a watched
 * output array fault, and the host's handler calls back in. */
static pthread_mutex_t writewatch_mutex;
static pthread_once_t writewatch_mutex_once = PTHREAD_ONCE_INIT;
static const struct backend *default_backend;
static struct writewatch_info init_info;

/* Sorted by base; allocations never overlap. */
static struct allocation **allocations;
static size_t allocation_count, allocation_capacity;

static void init_mutex(void)
{
    pthread_mutexattr_t attr;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&writewatch_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
}

static void lock(void)
{
    pthread_once(&writewatch_mutex_once, init_mutex);
    pthread_mutex_lock(&writewatch_mutex);
}

static void unlock(void)
{
    pthread_mutex_unlock(&writewatch_mutex);
}

/* Addresses gathered per round when the core needs them for itself. */
#define SCRATCH_ADDRESSES 256

const char *writewatch_backend_name(enum writewatch_backend backend)
{
    switch (backend)
    {
    case WRITEWATCH_BACKEND_UFFD: return "uffd";
    case WRITEWATCH_BACKEND_MPROTECT: return "mprotect";
    default: return "none";
    }
}

/* Chooses the backend once; WRITEWATCH_BACKEND forces one. */
enum writewatch_backend writewatch_init(void)
{
    const char *request = getenv("WRITEWATCH_BACKEND");

    lock();
    if (writewatch_page_size)
    {
        unlock();
        return init_info.backend;
    }
    writewatch_page_size = sysconf(_SC_PAGESIZE);
    if (!request || !*request) request = "auto";
    if (strcmp(request, "auto") && strcmp(request, "uffd") && strcmp(request, "mprotect"))
    {
        WARN("unknown WRITEWATCH_BACKEND=%s, using auto\n", request);
        request = "auto";
    }

    if (!strcmp(request, "mprotect"))
    {
        default_backend = &writewatch_mprotect_backend;
        snprintf(init_info.reason, sizeof(init_info.reason), "forced by WRITEWATCH_BACKEND=mprotect");
    }
    else if (writewatch_uffd_init(&init_info))
        default_backend = &writewatch_uffd_backend;
    else if (strcmp(request, "uffd"))
        default_backend = &writewatch_mprotect_backend;

    init_info.backend = default_backend ? default_backend->id : WRITEWATCH_BACKEND_NONE;
    if (init_info.backend == WRITEWATCH_BACKEND_UFFD)
        TRACE("backend uffd: %s\n", init_info.reason);
    else if (init_info.backend == WRITEWATCH_BACKEND_MPROTECT)
        WARN("backend mprotect: %s\n", init_info.reason);
    else
        ERR("WRITEWATCH_BACKEND=uffd, but the kernel backend is unavailable: %s\n", init_info.reason);
    unlock();
    return init_info.backend;
}

void writewatch_get_info(struct writewatch_info *info)
{
    lock();
    *info = init_info;
    unlock();
}

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

    if (index == allocation_count) return NULL;
    if (addr < allocations[index]->base) return NULL;
    return allocations[index];
}

/* The allocation that holds all of [start, end), if any. */
static struct allocation *find_allocation_for_range(const char *start, const char *end)
{
    struct allocation *alloc = find_allocation(start);

    if (!alloc || end > alloc->base + alloc->size) return NULL;
    return alloc;
}

/* Rounds a caller's range to whole pages; fails on empty or wrapping ranges. */
static int round_range(const void *base, size_t size, char **start, char **end)
{
    uintptr_t first = (uintptr_t)base & ~(writewatch_page_size - 1);
    uintptr_t last = (uintptr_t)base + size - 1;

    if (!size || last < (uintptr_t)base) return 0;
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

static int insert_allocation(struct allocation *alloc)
{
    size_t index = find_allocation_index(alloc->base);

    if (allocation_count == allocation_capacity)
    {
        size_t capacity = allocation_capacity ? allocation_capacity * 2 : 16;
        struct allocation **grown = realloc(allocations, capacity * sizeof(*grown));

        if (!grown) return 0;
        allocations = grown;
        allocation_capacity = capacity;
    }
    memmove(allocations + index + 1, allocations + index, (allocation_count - index) * sizeof(*allocations));
    allocations[index] = alloc;
    allocation_count++;
    return 1;
}

static void free_allocation(struct allocation *alloc)
{
    free(alloc->latched);
    free(alloc->written);
    free(alloc->prot);
    free(alloc);
}

/* Watches with the default backend, or with the fallback for mappings the
 * kernel backend refuses. */
static writewatch_status start_tracking(struct allocation *alloc, int unix_prot)
{
    writewatch_status status = default_backend->add(alloc, unix_prot);

    if (status == WRITEWATCH_STATUS_SUCCESS || default_backend == &writewatch_mprotect_backend) return status;
    WARN("%s backend refused %p-%p (%#x), using the mprotect backend for it\n", default_backend->name,
         alloc->base, alloc->base + alloc->size, (unsigned int)status);
    alloc->backend = &writewatch_mprotect_backend;
    return writewatch_mprotect_backend.add(alloc, unix_prot);
}

static void delete_allocation_at(size_t index)
{
    free_allocation(allocations[index]);
    allocation_count--;
    memmove(allocations + index, allocations + index + 1, (allocation_count - index) * sizeof(*allocations));
}

writewatch_status writewatch_add_allocation(void *base, size_t size, int unix_prot)
{
    writewatch_status status;
    struct allocation *alloc;
    char *end = (char *)base + size;

    if (!host_range_is_valid(base, size)) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (!default_backend) return WRITEWATCH_STATUS_NOT_SUPPORTED;
    if (!(alloc = calloc(1, sizeof(*alloc)))) return WRITEWATCH_STATUS_NO_MEMORY;
    alloc->base = base;
    alloc->size = size;
    alloc->pages = size / writewatch_page_size;
    alloc->backend = default_backend;

    lock();
    if (find_allocation(base) || find_allocation(end - 1) ||
        find_allocation_index(base) != find_allocation_index(end - 1))
    {
        ERR("%p-%p overlaps a watched allocation\n", base, end);
        free_allocation(alloc);
        status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    }
    else if (!insert_allocation(alloc))
    {
        free_allocation(alloc);
        status = WRITEWATCH_STATUS_NO_MEMORY;
    }
    else if ((status = start_tracking(alloc, unix_prot)))
        delete_allocation_at(find_allocation_index(base));
    else
        TRACE("%p-%p prot %#x backend %s\n", base, end, unix_prot, alloc->backend->name);
    unlock();
    return status;
}

void writewatch_remove_allocation(void *base)
{
    size_t index;

    lock();
    index = find_allocation_index(base);
    if (index < allocation_count && allocations[index]->base == base)
    {
        struct allocation *alloc = allocations[index];

        TRACE("%p-%p\n", alloc->base, alloc->base + alloc->size);
        if (alloc->backend->remove) alloc->backend->remove(alloc);
        delete_allocation_at(index);
    }
    else WARN("%p is not a watched allocation\n", base);
    unlock();
}

int writewatch_is_watched(const void *addr)
{
    int watched;

    lock();
    watched = find_allocation(addr) != NULL;
    unlock();
    return watched;
}

static int ensure_latched_bitmap(struct allocation *alloc)
{
    if (!alloc->latched) alloc->latched = calloc((alloc->pages + 7) / 8, 1);
    return alloc->latched != NULL;
}

/* Copies the written state of [start, end) into the latched bitmap. */
static writewatch_status latch_written_pages(struct allocation *alloc, char *start, char *end)
{
    void *scratch[SCRATCH_ADDRESSES];
    writewatch_status status;

    while (start < end)
    {
        uintptr_t i, pos = 0;

        status = alloc->backend->collect(alloc, start, end, 0, scratch, SCRATCH_ADDRESSES, &pos, &start);
        if (status) return status;
        if (pos && !ensure_latched_bitmap(alloc)) return WRITEWATCH_STATUS_NO_MEMORY;
        for (i = 0; i < pos; i++) bitmap_set(alloc->latched, page_index(alloc, scratch[i]));
    }
    return WRITEWATCH_STATUS_SUCCESS;
}

enum host_change
{
    HOST_PROTECT,
    HOST_LATCH,
    HOST_DECOMMIT,
};

/* Applies a host change to the allocation that holds its page-aligned range. */
static writewatch_status apply_host_change(enum host_change change, void *base, size_t size, int unix_prot)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    char *start = base, *end = start + size;

    TRACE("%d %p-%p prot %#x\n", change, start, end, unix_prot);
    if (!host_range_is_valid(base, size)) return status;

    lock();
    if (!(alloc = find_allocation_for_range(start, end)))
        WARN("%p-%p is not inside one watched allocation\n", start, end);
    else if (change == HOST_PROTECT)
        status = alloc->backend->set_protection(alloc, start, end, unix_prot);
    else if (change == HOST_LATCH)
        status = latch_written_pages(alloc, start, end);
    else
        status = alloc->backend->decommit(alloc, start, end);
    unlock();
    return status;
}

writewatch_status writewatch_set_protection(void *base, size_t size, int unix_prot)
{
    return apply_host_change(HOST_PROTECT, base, size, unix_prot);
}

writewatch_status writewatch_decommit(void *base, size_t size)
{
    return apply_host_change(HOST_DECOMMIT, base, size, 0);
}

writewatch_status writewatch_latch(void *base, size_t size)
{
    return apply_host_change(HOST_LATCH, base, size, 0);
}
/* First latched page in [start, end), or end. */
static char *next_latched_page(const struct allocation *alloc, char *start, char *end)
{
    size_t index, last;

    if (!alloc->latched) return end;
    last = page_index(alloc, end);
    for (index = page_index(alloc, start); index < last; index++)
    {
        if (!alloc->latched[index / 8]) index |= 7;
        else if (bitmap_test(alloc->latched, index)) return alloc->base + index * writewatch_page_size;
    }
    return end;
}

/* Keeps pages a failed reset call already took from the backend. */
static void keep_reported_pages(struct allocation *alloc, void **addresses, uintptr_t count)
{
    uintptr_t i;

    if (!count || !ensure_latched_bitmap(alloc))
    {
        if (count) ERR("lost the written state of %lu pages\n", (unsigned long)count);
        return;
    }
    for (i = 0; i < count; i++) bitmap_set(alloc->latched, page_index(alloc, addresses[i]));
}

/* Reports written and latched pages of [start, end) in ascending order, and
 * with reset resets exactly the reported ones. */
static writewatch_status collect_pages(struct allocation *alloc, char *start, char *end, int reset,
                                       void **addresses, uintptr_t count, uintptr_t *pos)
{
    const struct backend *backend = alloc->backend;
    writewatch_status status = WRITEWATCH_STATUS_SUCCESS;
    char *cursor = start, *latched, *next;

    while (cursor < end && *pos < count)
    {
        latched = next_latched_page(alloc, cursor, end);
        if (cursor < latched)
        {
            status = backend->collect(alloc, cursor, latched, reset, addresses, count, pos, &next);
            if (status || next < latched) break;
        }
        if (latched == end || *pos == count) break;

        addresses[(*pos)++] = latched;
        cursor = latched + writewatch_page_size;
        if (!reset) continue;
        bitmap_clear(alloc->latched, page_index(alloc, latched));
        if ((status = backend->reset(alloc, latched, cursor))) break;
    }
    if (status && reset) keep_reported_pages(alloc, addresses, *pos);
    return status;
}

writewatch_status writewatch_get_write_watch(uint32_t flags, void *base, size_t size, void **addresses,
                                             uintptr_t *count, uint32_t *granularity)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    uintptr_t pos = 0;
    char *start, *end;

    /* Wine 8.0's order of checks, which its conformance tests expect, with
     * Windows' alignment probes of the output pointers where they are first
     * used: the module stores through them. */
    if (!count || !granularity) return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if (!is_aligned(count, sizeof(*count)) || !is_aligned(granularity, sizeof(*granularity)))
        return WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT;
    if (!*count || !size) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (flags & ~WRITEWATCH_FLAG_RESET) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (!addresses) return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if (!is_aligned(addresses, sizeof(*addresses))) return WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT;
    if (!writewatch_page_size || !round_range(base, size, &start, &end)) return WRITEWATCH_STATUS_INVALID_PARAMETER;

    TRACE("%#x %p-%p %p %lu\n", flags, start, end, addresses, (unsigned long)*count);

    lock();
    if ((alloc = find_allocation_for_range(start, end)))
        status = collect_pages(alloc, start, end, flags & WRITEWATCH_FLAG_RESET, addresses, *count, &pos);
    unlock();

    if (status) return status;
    *count = pos;
    *granularity = writewatch_page_size;
    TRACE("returning %lu pages\n", (unsigned long)pos);
    return status;
}

writewatch_status writewatch_reset_write_watch(void *base, size_t size)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    char *start, *end;

    if (!writewatch_page_size || !round_range(base, size, &start, &end)) return status;

    TRACE("%p-%p\n", start, end);

    lock();
    if ((alloc = find_allocation_for_range(start, end)))
    {
        status = alloc->backend->reset(alloc, start, end);
        if (!status && alloc->latched)
        {
            size_t index, last = page_index(alloc, end);

            for (index = page_index(alloc, start); index < last; index++) bitmap_clear(alloc->latched, index);
        }
    }
    unlock();
    return status;
}

int writewatch_handle_fault(void *addr)
{
    struct allocation *alloc;
    char *page = (char *)((uintptr_t)addr & ~(writewatch_page_size - 1));
    int handled = 0;

    if (!writewatch_page_size) return 0;
    lock();
    if ((alloc = find_allocation(page)) && alloc->backend->handle_fault)
        handled = alloc->backend->handle_fault(alloc, page);
    unlock();
    return handled;
}

/* Calls prepare_buffer or complete_buffer on each allocation that a buffer
 * of a system call overlaps. */
static void apply_to_buffer(void *base, size_t size, size_t written, int complete)
{
    char *start, *end, *written_end;
    size_t index;

    if (!writewatch_page_size || !round_range(base, size, &start, &end)) return;
    /* nothing written marks no page, even when the buffer starts mid-page */
    written_end = written ? (char *)base + (written < size ? written : size) : start;
    lock();
    for (index = find_allocation_index(start); index < allocation_count; index++)
    {
        struct allocation *alloc = allocations[index];
        char *first = start > alloc->base ? start : alloc->base;
        char *last = end < alloc->base + alloc->size ? end : alloc->base + alloc->size;
        char *marked_end = written_end < first ? first : written_end < last ? written_end : last;

        if (alloc->base >= end) break;
        if (!complete && alloc->backend->prepare_buffer) alloc->backend->prepare_buffer(alloc, first, last);
        if (complete && alloc->backend->complete_buffer)
            alloc->backend->complete_buffer(alloc, first, last, marked_end);
    }
    unlock();
}

void writewatch_prepare_buffer(void *base, size_t size)
{
    TRACE("%p-%p\n", base, (char *)base + size);
    apply_to_buffer(base, size, 0, 0);
}

void writewatch_complete_buffer(void *base, size_t size, size_t written)
{
    TRACE("%p-%p written %lu\n", base, (char *)base + size, (unsigned long)written);
    apply_to_buffer(base, size, written, 1);
}
