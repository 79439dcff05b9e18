/*
 * writewatch: the Windows write-watch API on top of a tracking backend.
 *
 * The core keeps the record of write-watched allocations, validates requests
 * with Windows' rules and status codes, and merges the backend's written
 * pages with the pages it holds itself: those VirtualProtect latched, and
 * those a resetting call took from the backend but could not report.
 *
 * Everything that reads or changes write-watch state runs under one lock,
 * the host's or the module's own (see include/writewatch.h).  A query
 * gathers its answer in batches of runs of pages on its own stack, and
 * copies each batch to the caller after leaving the lock.
 */

#if 0
#pragma makedep unix
#endif

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "writewatch_private.h"
#include "wine/debug.h"

WINE_DEFAULT_DEBUG_CHANNEL(writewatch);

size_t writewatch_page_size;
unsigned int writewatch_page_shift;

static const struct writewatch_lock *host_lock;
static pthread_mutex_t own_mutex;
static const struct backend *default_backend;
static struct writewatch_info init_info;

/* Sorted by base; allocations never overlap. */
static struct allocation **allocations;
static size_t allocation_count, allocation_capacity;

/* The module's own lock, for hosts that bring none: recursive, and it
 * blocks every asynchronous signal, so that no thread is stopped while it
 * holds it.  Synchronous signals stay deliverable; nothing faults under it. */
static void own_enter(sigset_t *state)
{
    sigset_t block;

    sigfillset(&block);
    sigdelset(&block, SIGSEGV);
    sigdelset(&block, SIGBUS);
    sigdelset(&block, SIGILL);
    sigdelset(&block, SIGFPE);
    sigdelset(&block, SIGTRAP);
    pthread_sigmask(SIG_BLOCK, &block, state);
    pthread_mutex_lock(&own_mutex);
}

static void own_leave(sigset_t *state)
{
    pthread_mutex_unlock(&own_mutex);
    pthread_sigmask(SIG_SETMASK, state, NULL);
}

static const struct writewatch_lock own_lock = { own_enter, own_leave };

static void lock(sigset_t *state)
{
    host_lock->enter(state);
}

static void unlock(sigset_t *state)
{
    host_lock->leave(state);
}

/* Page sets */

int page_set_init(struct page_set *set, const struct allocation *alloc)
{
    if (!set->bits) set->bits = calloc((alloc->pages + 63) / 64, sizeof(uint64_t));
    return set->bits != NULL;
}

int page_set_has(const struct page_set *set, size_t index)
{
    return set->count && (set->bits[index / 64] >> (index % 64)) & 1;
}

/* Adds or removes the pages of [first, last), a word at a time. */
static void page_set_assign(struct page_set *set, size_t first, size_t last, int add)
{
    while (first < last)
    {
        size_t shift = first % 64, bits = last - first < 64 - shift ? last - first : 64 - shift;
        uint64_t mask = (bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1) << shift;
        uint64_t *word = &set->bits[first / 64];

        if (add)
        {
            set->count += __builtin_popcountll(mask & ~*word);
            *word |= mask;
        }
        else
        {
            set->count -= __builtin_popcountll(mask & *word);
            *word &= ~mask;
        }
        first += bits;
    }
}

void page_set_add(struct page_set *set, size_t first, size_t last)
{
    page_set_assign(set, first, last, 1);
}

void page_set_remove(struct page_set *set, size_t first, size_t last)
{
    if (set->count) page_set_assign(set, first, last, 0);
}

/* The first index in [first, last) whose bit, in a or b (either may be
 * NULL) or with missing in neither, is set; last if none. */
static size_t page_set_find(const struct page_set *a, const struct page_set *b, int missing, size_t first,
                            size_t last)
{
    if (!missing && !(a && a->count) && !(b && b->count)) return last;
    while (first < last)
    {
        size_t word = first / 64;
        uint64_t bits = (a && a->count ? a->bits[word] : 0) | (b && b->count ? b->bits[word] : 0);

        if (missing) bits = ~bits;
        bits >>= first % 64;
        if (bits)
        {
            first += __builtin_ctzll(bits);
            return first < last ? first : last;
        }
        first = (word + 1) * 64;
    }
    return last;
}

size_t page_set_next(const struct page_set *a, const struct page_set *b, size_t first, size_t last)
{
    return page_set_find(a, b, 0, first, last);
}

size_t page_set_next_missing(const struct page_set *set, size_t first, size_t last)
{
    return page_set_find(set, NULL, 1, first, last);
}

/* Run buffers */

int run_buffer_append(struct run_buffer *buf, char *start, char *end)
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

const char *writewatch_backend_name(enum writewatch_backend backend)
{
    switch (backend)
    {
    case WRITEWATCH_BACKEND_UFFD: return "uffd";
    case WRITEWATCH_BACKEND_MPROTECT: return "mprotect";
    default: return "none";
    }
}

static void init_own_lock(void)
{
    pthread_mutexattr_t attr;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&own_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
}

/* Records the host's lock.  Choosing the backend costs system calls and a
 * self-test, which a process that never watches memory should not pay:
 * it waits for the first watched allocation. */
void writewatch_init(const struct writewatch_lock *lock_ops)
{
    if (host_lock) return;
    if (!lock_ops)
    {
        init_own_lock();
        lock_ops = &own_lock;
    }
    writewatch_page_size = sysconf(_SC_PAGESIZE);
    writewatch_page_shift = __builtin_ctzl(writewatch_page_size);
    host_lock = lock_ops;
}

/* Chooses the backend, once, with the lock held; WRITEWATCH_BACKEND forces
 * one.  Leaves default_backend NULL only when a forced one is unavailable. */
static void choose_backend(void)
{
    static int chosen;
    const char *request = getenv("WRITEWATCH_BACKEND");

    if (chosen) return;
    chosen = 1;
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
        TRACE("uffd: %s\n", init_info.reason);
    else if (init_info.backend == WRITEWATCH_BACKEND_MPROTECT)
        WARN("mprotect: %s\n", init_info.reason);
    else
        ERR("WRITEWATCH_BACKEND=uffd, but the kernel backend is unavailable: %s\n", init_info.reason);
}

void writewatch_get_info(struct writewatch_info *info)
{
    sigset_t state;

    *info = init_info;
    if (!host_lock) return;
    lock(&state);
    choose_backend();
    *info = init_info;
    unlock(&state);
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
    free(alloc->latched.bits);
    free(alloc->kept.bits);
    free(alloc->armed.bits);
    free(alloc->written.bits);
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
    sigset_t state;

    if (!host_range_is_valid(base, size)) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (!(alloc = calloc(1, sizeof(*alloc)))) return WRITEWATCH_STATUS_NO_MEMORY;
    alloc->base = base;
    alloc->size = size;
    alloc->pages = size >> writewatch_page_shift;

    lock(&state);
    choose_backend();
    if (!(alloc->backend = default_backend))
    {
        free_allocation(alloc);
        status = WRITEWATCH_STATUS_NOT_SUPPORTED;
    }
    else if (find_allocation(base) || find_allocation(end - 1) ||
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
    unlock(&state);
    return status;
}

void writewatch_remove_allocation(void *base)
{
    sigset_t state;
    size_t index;

    if (!writewatch_page_size) return;
    lock(&state);
    index = find_allocation_index(base);
    if (index < allocation_count && allocations[index]->base == base)
    {
        struct allocation *alloc = allocations[index];

        TRACE("%p-%p\n", alloc->base, alloc->base + alloc->size);
        if (alloc->backend->remove) alloc->backend->remove(alloc);
        delete_allocation_at(index);
    }
    else WARN("%p is not a watched allocation\n", base);
    unlock(&state);
}

/* Takes no lock: the host asks with its own lock held, which every change
 * to the allocations takes, so that asking costs unwatched memory nothing:
 * in a program that watches none, one load. */
int writewatch_is_watched(const void *addr)
{
    return allocation_count && find_allocation(addr) != NULL;
}

/* Adds to set the pages of runs from index i on, past page cut. */
static void add_runs(struct page_set *set, const struct allocation *alloc, const struct run_buffer *runs, size_t i,
                     size_t cut)
{
    for (; i < runs->count; i++)
    {
        size_t first = page_index(alloc, (char *)(uintptr_t)runs->runs[i].start);
        size_t last = page_index(alloc, (char *)(uintptr_t)runs->runs[i].end);

        if (first < cut) first = cut;
        if (first < last) page_set_add(set, first, last);
    }
}

/* Keeps the pages of runs from index i on, past page cut, which the
 * backend reset but nobody was told of: they stay reported. */
static void keep_pages(struct allocation *alloc, const struct run_buffer *runs, size_t i, size_t cut)
{
    add_runs(&alloc->kept, alloc, runs, i, cut);
}

/* The core's own pages (latched or kept) of [first, last) are reported. */
static void forget_core_pages(struct allocation *alloc, size_t first, size_t last)
{
    page_set_remove(&alloc->latched, first, last);
    page_set_remove(&alloc->kept, first, last);
}

/* Stores in out the first max_pages pages of found and of the core's own
 * pages in [first, last), as many runs as out holds; where out is full,
 * *next moves back to the first page it could not take.  With reset, the
 * core's pages reported are forgotten, and found pages past the cut, which
 * the backend reset, kept. */
static void merge_core_pages(struct allocation *alloc, size_t first, size_t last, int reset, uintptr_t max_pages,
                             const struct run_buffer *found, struct run_buffer *out, char **next)
{
    size_t i = 0, cursor = first;

    while (max_pages)
    {
        size_t run_first = last, run_last = last, core, take_first, take_last;

        if (i < found->count)
        {
            run_first = page_index(alloc, (char *)(uintptr_t)found->runs[i].start);
            run_last = page_index(alloc, (char *)(uintptr_t)found->runs[i].end);
        }
        core = page_set_next(&alloc->latched, &alloc->kept, cursor, run_first);
        if (core < run_first)
        {
            take_first = core;
            take_last = core + 1;
        }
        else if (i < found->count)
        {
            take_first = run_first;
            take_last = run_last - run_first < max_pages ? run_last : run_first + max_pages;
        }
        else break;

        if (!run_buffer_append(out, page_address(alloc, take_first), page_address(alloc, take_last)))
        {
            *next = page_address(alloc, cursor);
            break;
        }
        if (reset) forget_core_pages(alloc, take_first, take_last);
        max_pages -= take_last - take_first;
        cursor = take_last;
        if (cursor == run_last) i++;
    }
    if (reset) keep_pages(alloc, found, i, cursor);
}

/* Gathers the first written pages of [start, end), the backend's and the
 * core's, at most max_pages, as many runs as found holds, into *result;
 * with reset, resets exactly those.  *next is where the next batch starts.
 * On failure, the pages the backend had already reset stay reported. */
static writewatch_status gather_batch(struct allocation *alloc, char *start, char *end, int reset,
                                      uintptr_t max_pages, struct run_buffer *found, struct run_buffer *result,
                                      char **next)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);
    writewatch_status status;
    int merge;

    if (reset && !page_set_init(&alloc->kept, alloc)) return WRITEWATCH_STATUS_NO_MEMORY;
    /* the backend's pages and the core's merge into the second half */
    merge = page_set_next(&alloc->latched, &alloc->kept, first, last) < last;
    run_buffer_empty(found, merge ? found->size / 2 : found->size);
    if ((status = alloc->backend->collect(alloc, start, end, reset, max_pages, found, next)))
    {
        if (reset) keep_pages(alloc, found, 0, first);
        return status;
    }
    *result = *found;
    if (!merge) return WRITEWATCH_STATUS_SUCCESS;
    run_buffer_init(result, found->runs + found->capacity, found->capacity);
    merge_core_pages(alloc, first, page_index(alloc, *next), reset, max_pages, found, result, next);
    return WRITEWATCH_STATUS_SUCCESS;
}

/* Adds the pages of [first, last) in from to the set. */
static void add_page_set(struct page_set *set, const struct page_set *from, size_t first, size_t last)
{
    size_t i, run_last;

    for (i = page_set_next(from, NULL, first, last); i < last; i = page_set_next(from, NULL, run_last, last))
    {
        run_last = page_set_next_missing(from, i, last);
        page_set_add(set, i, run_last);
    }
}

/* Copies the written state of [start, end) into the latched set, a batch
 * at a time. */
static writewatch_status latch_written_pages(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);
    struct page_region storage[SMALL_BATCH];
    writewatch_status status;
    struct run_buffer found;

    run_buffer_init(&found, storage, SMALL_BATCH);
    while (start < end)
    {
        run_buffer_empty(&found, SMALL_BATCH);
        if ((status = alloc->backend->collect(alloc, start, end, 0, UINTPTR_MAX, &found, &start))) return status;
        if (found.count && !page_set_init(&alloc->latched, alloc)) return WRITEWATCH_STATUS_NO_MEMORY;
        add_runs(&alloc->latched, alloc, &found, 0, 0);
    }
    if (page_set_next(&alloc->kept, NULL, first, last) == last) return WRITEWATCH_STATUS_SUCCESS;
    if (!page_set_init(&alloc->latched, alloc)) return WRITEWATCH_STATUS_NO_MEMORY;
    add_page_set(&alloc->latched, &alloc->kept, first, last);
    return WRITEWATCH_STATUS_SUCCESS;
}

/* The pages are written anew from here on: the written state the core
 * held for them is gone, what VirtualProtect latched stays. */
static writewatch_status decommit_pages(struct allocation *alloc, char *start, char *end)
{
    page_set_remove(&alloc->kept, page_index(alloc, start), page_index(alloc, end));
    return alloc->backend->decommit(alloc, start, end);
}

/* MEM_RESET: the kernel may drop the contents when it needs the memory.
 * MADV_FREE keeps page table entries, and with them the written state of
 * every page, where MADV_DONTNEED would zap it; MEM_RESET is only a hint,
 * so a kernel without MADV_FREE drops nothing. */
static writewatch_status discard_pages(WW_UNUSED struct allocation *alloc, char *start, char *end)
{
    if (!madvise(start, end - start, MADV_FREE) || errno == EINVAL) return WRITEWATCH_STATUS_SUCCESS;
    return status_from_errno(errno);
}

enum host_change
{
    HOST_PROTECT,
    HOST_LATCH,
    HOST_DECOMMIT,
    HOST_DISCARD,
};

/* Applies a host change to the allocation that holds its page-aligned range. */
static writewatch_status apply_host_change(enum host_change change, void *base, size_t size, int unix_prot)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    char *start = base, *end = start + size;
    sigset_t state;

    TRACE("%d %p-%p prot %#x\n", change, start, end, unix_prot);
    if (!host_range_is_valid(base, size)) return status;

    lock(&state);
    if (!(alloc = find_allocation_for_range(start, end)))
        WARN("%p-%p is not inside one watched allocation\n", start, end);
    else if (change == HOST_PROTECT)
        status = alloc->backend->set_protection(alloc, start, end, unix_prot);
    else if (change == HOST_LATCH)
        status = latch_written_pages(alloc, start, end);
    else if (change == HOST_DECOMMIT)
        status = decommit_pages(alloc, start, end);
    else
        status = discard_pages(alloc, start, end);
    unlock(&state);
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

writewatch_status writewatch_discard(void *base, size_t size)
{
    return apply_host_change(HOST_DISCARD, base, size, 0);
}

/* A store that changes nothing, even when other threads write the same
 * byte meanwhile: an atomic add of zero.  Spelled out on x86, where
 * compilers may turn an idempotent atomic into a plain load. */
static void store_same_byte(char *byte)
{
#if defined(__i386__) || defined(__x86_64__)
    __asm__ __volatile__( "lock addb $0, %0" : "+m" (*byte) );
#else
    __atomic_fetch_add(byte, 0, __ATOMIC_RELAXED);
#endif
}

/* Windows' ProbeForWrite: a store to every page of [ptr, ptr + size), so
 * that memory the caller cannot write faults here, before anything is
 * reset and with no lock held. */
static void probe_for_write(void *ptr, size_t size)
{
    char *byte = ptr, *end = byte + size;

    while (byte < end)
    {
        store_same_byte(byte);
        byte = (char *)(((uintptr_t)byte | (writewatch_page_size - 1)) + 1);
    }
}

static int same_page(const void *a, const void *b)
{
    return !(((uintptr_t)a ^ (uintptr_t)b) >> writewatch_page_shift);
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
    writewatch_status status;
    const char *backend;
};

/* Answers one batch, gathered into found under the lock and copied out
 * without it; returns nonzero when there is more to answer.  Another
 * thread may release the allocation between two batches: what was
 * reported before stays reported. */
static int answer_batch(struct query *query, struct run_buffer *found)
{
    writewatch_status status = WRITEWATCH_STATUS_INVALID_PARAMETER;
    struct allocation *alloc;
    struct run_buffer runs;
    sigset_t state;

    lock(&state);
    if ((alloc = find_allocation_for_range(query->start, query->end)))
    {
        query->backend = alloc->backend->name;
        status = gather_batch(alloc, query->start, query->end, query->reset, query->room - query->done, found,
                              &runs, &query->start);
    }
    unlock(&state);
    if (!alloc && query->done) return 0;
    if ((query->status = status)) return 0;
    query->done += copy_out(&runs, query->addresses + query->done);
    return query->start < query->end && query->done < query->room;
}

/* The most runs the answer to a query can hold: one per two pages of its
 * range, and no more than the caller's array takes. */
static uintptr_t most_runs(const struct query *query)
{
    uintptr_t runs = (((uintptr_t)(query->end - query->start) >> writewatch_page_shift) + 1) / 2;

    return runs < query->room ? runs : query->room;
}

/* Answers a query in batches of the size regions of storage. */
static void answer_query(struct query *query, struct page_region *storage, size_t size)
{
    struct run_buffer found;

    run_buffer_init(&found, storage, size);
    while (answer_batch(query, &found));
}

/* A query whose answer may hold more than SMALL_BATCH runs, in batches of
 * RUN_BATCH regions in a frame of its own: only such queries touch its
 * stack (with -fstack-clash-protection, entering a frame touches every
 * page of it). */
static void __attribute__((noinline)) answer_large_query(struct query *query)
{
    struct page_region storage[RUN_BATCH];

    answer_query(query, storage, RUN_BATCH);
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
    /* usually beside count, on a page just probed */
    if (!same_page(count, granularity)) probe_for_write(granularity, sizeof(*granularity));
    probe_for_write(addresses, query.room * sizeof(*addresses));

    TRACE("%#x %p-%p %p %lu\n", flags, query.start, query.end, addresses, (unsigned long)query.room);

    if (most_runs(&query) > SMALL_BATCH) answer_large_query(&query);
    else answer_query(&query, storage, SMALL_BATCH);
    /* a later batch that fails kept what it reset: the pages copied out
     * before it are the answer */
    if (query.status && !query.done) return query.status;
    if (query.status)
        WARN("answering %lu pages after status %#x\n", (unsigned long)query.done, (unsigned int)query.status);

    *count = query.done;
    *granularity = writewatch_page_size;
    TRACE("returning %lu pages (%s)\n", (unsigned long)query.done, query.backend);
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

    lock(&state);
    if ((alloc = find_allocation_for_range(start, end)) && !(status = alloc->backend->reset(alloc, start, end)))
        forget_core_pages(alloc, page_index(alloc, start), page_index(alloc, end));
    unlock(&state);
    return status;
}

int writewatch_handle_fault(void *addr)
{
    struct allocation *alloc;
    char *page;
    sigset_t state;
    int handled = 0;

    if (!writewatch_page_size) return 0;
    page = (char *)((uintptr_t)addr & ~(writewatch_page_size - 1));
    lock(&state);
    if ((alloc = find_allocation(page)) && alloc->backend->handle_fault)
        handled = alloc->backend->handle_fault(alloc, page);
    unlock(&state);
    return handled;
}

/* Lends each allocation that a system call's buffer overlaps its part, or
 * gives it back with the written bytes marked; returns nonzero when any
 * part was lent. */
static int apply_to_buffer(void *base, size_t size, size_t written, int lend)
{
    char *start, *end, *written_end;
    int lent = 0;
    sigset_t state;
    size_t index;

    /* a program that watches nothing takes no lock for its system calls */
    if (!__atomic_load_n(&allocation_count, __ATOMIC_RELAXED)) return 0;
    if (!round_range(base, size, &start, &end)) return 0;
    /* nothing written marks no page, even when the buffer starts mid-page */
    written_end = written ? (char *)base + (written < size ? written : size) : start;
    lock(&state);
    for (index = find_allocation_index(start); index < allocation_count; index++)
    {
        struct allocation *alloc = allocations[index];
        char *first = start > alloc->base ? start : alloc->base;
        char *last = end < alloc->base + alloc->size ? end : alloc->base + alloc->size;
        char *marked_end = written_end < first ? first : written_end < last ? written_end : last;

        if (alloc->base >= end) break;
        if (lend && alloc->backend->lend_buffer) lent |= alloc->backend->lend_buffer(alloc, first, last);
        if (!lend && alloc->backend->buffer_written) alloc->backend->buffer_written(alloc, first, last, marked_end);
    }
    unlock(&state);
    return lent;
}

int writewatch_lend_buffer(void *base, size_t size)
{
    TRACE("%p-%p\n", base, (char *)base + size);
    return apply_to_buffer(base, size, 0, 1);
}

void writewatch_buffer_written(void *base, size_t size, size_t written)
{
    TRACE("%p-%p written %lu\n", base, (char *)base + size, (unsigned long)written);
    apply_to_buffer(base, size, written, 0);
}
