/*
 * writewatch: the fallback backend, for kernels or sandboxes without
 * userfaultfd WP-async.
 *
 * Clean pages lose PROT_WRITE; the first write faults, the host's signal
 * handler calls writewatch_handle_fault(), and the page gets its protection
 * back and is marked written.  Protection always changes before the written
 * bit does, so a racing write either faults or was already counted.
 *
 * Each run of written pages is a mapping of its own.  Past vm.max_map_count
 * mprotect cannot split a mapping any more: then pages stay writable and
 * count as written, over-reporting rather than faulting the program.
 */

#if 0
#pragma makedep unix
#endif

#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "writewatch_private.h"
#include "wine/debug.h"

WINE_DEFAULT_DEBUG_CHANNEL(writewatch);

static int is_written(const struct allocation *alloc, size_t index)
{
    return page_set_has(&alloc->written, index);
}

/* Clean pages are read-only, unless lent to a system call. */
static int effective_prot(const struct allocation *alloc, size_t index, int lend)
{
    if (lend || is_written(alloc, index)) return alloc->prot[index];
    return alloc->prot[index] & ~PROT_WRITE;
}

static writewatch_status protect_pages(const struct allocation *alloc, size_t first, size_t last, int unix_prot)
{
    if (!mprotect(page_address(alloc, first), (last - first) * writewatch_page_size, unix_prot))
        return WRITEWATCH_STATUS_SUCCESS;
    WARN("mprotect %p-%p %#x: %s\n", page_address(alloc, first), page_address(alloc, last), unix_prot,
         strerror(errno));
    return status_from_errno(errno);
}

/* Applies every page's effective protection, one mprotect per run. */
static writewatch_status apply_protection(const struct allocation *alloc, size_t first, size_t last, int lend)
{
    writewatch_status status;

    while (first < last)
    {
        int prot = effective_prot(alloc, first, lend);
        size_t end = first + 1;

        while (end < last && effective_prot(alloc, end, lend) == prot) end++;
        if ((status = protect_pages(alloc, first, end, prot))) return status;
        first = end;
    }
    return WRITEWATCH_STATUS_SUCCESS;
}

/* Whether a page moves to the other written state: marking takes clean pages
 * that may be written, clearing takes written pages. */
static int page_changes_state(const struct allocation *alloc, size_t index, int mark)
{
    if (mark) return !is_written(alloc, index) && (alloc->prot[index] & PROT_WRITE);
    return is_written(alloc, index);
}

/* Marks clean pages of [first, last) written, or clears written ones, run by
 * run: protection first, then the bits.  A run whose protection cannot
 * change stays as it was: for marking that is a failure, for clearing an
 * over-report. */
static writewatch_status change_written_state(struct allocation *alloc, size_t first, size_t last, int mark)
{
    writewatch_status status;

    while (first < last)
    {
        size_t end;
        int prot;

        if (!page_changes_state(alloc, first, mark))
        {
            first++;
            continue;
        }
        prot = alloc->prot[first];
        for (end = first + 1; end < last; end++)
            if (!page_changes_state(alloc, end, mark) || alloc->prot[end] != prot) break;
        if ((status = protect_pages(alloc, first, end, mark ? prot : prot & ~PROT_WRITE)))
        {
            if (mark) return status;
        }
        else if (mark) page_set_add(&alloc->written, first, end);
        else page_set_remove(&alloc->written, first, end);
        first = end;
    }
    return WRITEWATCH_STATUS_SUCCESS;
}

static writewatch_status mprotect_add(struct allocation *alloc, int unix_prot)
{
    writewatch_status status;

    /* a reservation's protections stay untouched memory */
    alloc->prot = calloc(alloc->pages, 1);
    if (!page_set_init(&alloc->written, alloc) || !alloc->prot) return WRITEWATCH_STATUS_NO_MEMORY;
    if (unix_prot != PROT_NONE) memset(alloc->prot, unix_prot, alloc->pages);
    if (!(unix_prot & PROT_WRITE)) return WRITEWATCH_STATUS_SUCCESS;
    if (!(status = apply_protection(alloc, 0, alloc->pages, 0))) return status;
    /* leave the memory as the host mapped it */
    mprotect(alloc->base, alloc->size, unix_prot);
    return status;
}

static writewatch_status mprotect_set_protection(struct allocation *alloc, char *start, char *end, int unix_prot)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);

    memset(alloc->prot + first, unix_prot, last - first);
    return apply_protection(alloc, first, last, 0);
}

/* The host mapped fresh inaccessible pages: nothing on them is written. */
static writewatch_status mprotect_decommit(struct allocation *alloc, char *start, char *end)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end);

    page_set_remove(&alloc->written, first, last);
    memset(alloc->prot + first, PROT_NONE, last - first);
    return WRITEWATCH_STATUS_SUCCESS;
}

static writewatch_status mprotect_collect(struct allocation *alloc, char *start, char *end, int reset,
                                          uintptr_t max_pages, struct run_buffer *out, char **next)
{
    size_t first = page_index(alloc, start), last = page_index(alloc, end), index = first;

    *next = end;
    while (max_pages && (index = page_set_next(&alloc->written, NULL, index, last)) < last)
    {
        size_t run_end = page_set_next_missing(&alloc->written, index, last);

        if (run_end - index > max_pages) run_end = index + max_pages;
        if (!run_buffer_append(out, page_address(alloc, index), page_address(alloc, run_end)))
        {
            *next = page_address(alloc, index);
            break;
        }
        max_pages -= run_end - index;
        index = run_end;
    }
    /* every written page before index is in out */
    if (reset) change_written_state(alloc, first, index, 0);
    return WRITEWATCH_STATUS_SUCCESS;
}

static writewatch_status mprotect_reset(struct allocation *alloc, char *start, char *end)
{
    return change_written_state(alloc, page_index(alloc, start), page_index(alloc, end), 0);
}

/* Whether a page belongs to the same mapping as a clean page of protection
 * prot: clean, with the same protection. */
static int same_clean_mapping(const struct allocation *alloc, size_t index, int prot)
{
    return !is_written(alloc, index) && alloc->prot[index] == prot;
}

static int mprotect_handle_fault(struct allocation *alloc, char *page)
{
    size_t index = page_index(alloc, page), first = index, last = index + 1;
    int prot = alloc->prot[index];

    if (!(prot & PROT_WRITE)) return 0;
    /* another thread may have resolved it first: the write can be retried */
    if (is_written(alloc, index)) return 1;
    if (!change_written_state(alloc, index, index + 1, 1)) return 1;

    /* Splitting the mapping failed: give the whole mapping its protection
     * back, which needs no split, and call every page of it written. */
    while (first && same_clean_mapping(alloc, first - 1, prot)) first--;
    while (last < alloc->pages && same_clean_mapping(alloc, last, prot)) last++;
    WARN("over-reporting %p-%p: cannot split the mapping\n", page_address(alloc, first), page_address(alloc, last));
    return !change_written_state(alloc, first, last, 1);
}

/* Writes by other threads to the lent pages go unseen until the call
 * completes, as with Wine 8.0's own fallback. */
static int mprotect_lend_buffer(struct allocation *alloc, char *start, char *end)
{
    apply_protection(alloc, page_index(alloc, start), page_index(alloc, end), 1);
    return 1;
}

static void mprotect_buffer_written(struct allocation *alloc, char *start, char *end, char *written_end)
{
    size_t index, first = page_index(alloc, start), written = page_index(alloc, written_end + writewatch_page_size - 1);

    for (index = first; index < written; index++)
        if (alloc->prot[index] & PROT_WRITE) page_set_add(&alloc->written, index, index + 1);
    apply_protection(alloc, first, page_index(alloc, end), 0);
}

const struct backend writewatch_mprotect_backend =
{
    "mprotect",
    WRITEWATCH_BACKEND_MPROTECT,
    mprotect_add,
    mprotect_set_protection,
    mprotect_decommit,
    mprotect_collect,
    mprotect_reset,
    NULL, /* the core frees the page sets */
    mprotect_handle_fault,
    mprotect_lend_buffer,
    mprotect_buffer_written,
};
