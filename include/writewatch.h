/*
 * writewatch: Windows write watches (MEM_WRITE_WATCH, NtGetWriteWatch,
 * NtResetWriteWatch) for a Unix host such as Wine's ntdll.
 *
 * Host interface
 * ==============
 * The module keeps its own record of the write-watched allocations, so it
 * needs no access to the host's view tree.  The host owns the address space:
 * it maps, remaps and unmaps memory, and tells the module what it did.
 *
 *   writewatch_init()               once, before anything else: takes the
 *                                   host's lock.  It costs nothing more: the
 *                                   backend (WRITEWATCH_BACKEND=auto|uffd|
 *                                   mprotect) is chosen when the first
 *                                   allocation is watched.
 *   writewatch_add_allocation()     after mapping a new MEM_WRITE_WATCH
 *                                   allocation; it starts with no page written.
 *                                   A reservation (PROT_NONE) costs the kernel
 *                                   backend no page tables until committed.
 *   writewatch_set_protection()     instead of mprotect() on watched pages
 *                                   (commit, VirtualProtect, guard pages...):
 *                                   the fallback must keep clean pages
 *                                   read-only, and the kernel backend protects
 *                                   pages before they first become accessible,
 *                                   so it applies the protection.
 *   writewatch_latch()              after a successful VirtualProtect: Windows
 *                                   keeps the written state of pages that
 *                                   change protection even if they are
 *                                   decommitted.
 *   writewatch_decommit()           after replacing pages with a fresh
 *                                   PROT_NONE mapping (MEM_DECOMMIT).
 *   writewatch_discard()            instead of madvise() for MEM_RESET: the
 *                                   kernel may drop the contents, and every
 *                                   page keeps its written state.
 *   writewatch_remove_allocation()  after MEM_RELEASE unmapped the allocation.
 *   writewatch_get_write_watch()    NtGetWriteWatch for the current process.
 *   writewatch_reset_write_watch()  NtResetWriteWatch for the current process.
 *   writewatch_handle_fault()       from the host's SIGSEGV handler, for a
 *                                   write fault: nonzero when it was a
 *                                   write-watch fault the module resolved.
 *   writewatch_lend_buffer()        before a system call writes user memory
 *                                   (read(2), a server reply...) after it
 *                                   failed with EFAULT: lets the kernel write
 *                                   the buffer's watched pages; nonzero when
 *                                   it lent any.
 *   writewatch_buffer_written()     after that call, or after any write the
 *                                   host made behind the tracking (such as
 *                                   WriteProcessMemory through /proc/PID/mem):
 *                                   marks the pages of the bytes written and
 *                                   takes back what was lent.  Both do nothing
 *                                   on the kernel backend, where the kernel
 *                                   records what it writes.
 *
 * Addresses and sizes passed by the host are page aligned, except for the
 * Nt entries and the buffer entries, which take the caller's values.
 * Statuses are NTSTATUS values.  The module never installs signal handlers
 * and maps no memory but a two-page probe at start-up.
 *
 * Locking
 * =======
 * There is one lock: the host's address-space lock, given to
 * writewatch_init() (Wine: the virtual-memory section, which blocks the
 * signals Wine suspends threads with), or, when the host gives none, the
 * module's own, which blocks every asynchronous signal.  It must be
 * recursive.  Every entry takes it for itself, so the host may call any
 * entry with it held or not, with two rules:
 *
 *   - writewatch_get_write_watch() must be called WITHOUT it.  It reads and
 *     writes the caller's count, granularity and array only outside it:
 *     first a probe of every output page (a store that changes nothing, as
 *     Windows' ProbeForWrite does), then the scan under the lock into the
 *     module's memory, then the copy out.  A fault in the probe or the copy
 *     is the host's to turn into STATUS_ACCESS_VIOLATION (Wine does it for
 *     every system call); since no lock is held, it can neither deadlock
 *     nor leave the lock taken, and a fault in the probe happens before
 *     anything is reset.
 *   - writewatch_lend_buffer() and the system call it is for, and
 *     writewatch_buffer_written(), must run under one hold of the lock, so
 *     that no other thread changes the protection of the lent pages between
 *     them.
 *
 * The module calls nothing of the host's while it holds the lock, and never
 * touches memory that can fault there, so no lock order exists to get wrong.
 */

#ifndef WRITEWATCH_H
#define WRITEWATCH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef int32_t writewatch_status;

#define WRITEWATCH_STATUS_SUCCESS            ((writewatch_status)0x00000000)
#define WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT ((writewatch_status)0x80000002)
#define WRITEWATCH_STATUS_ACCESS_VIOLATION   ((writewatch_status)0xc0000005)
#define WRITEWATCH_STATUS_INVALID_PARAMETER  ((writewatch_status)0xc000000d)
#define WRITEWATCH_STATUS_NO_MEMORY          ((writewatch_status)0xc0000017)
#define WRITEWATCH_STATUS_NOT_SUPPORTED      ((writewatch_status)0xc00000bb)
#define WRITEWATCH_STATUS_UNSUCCESSFUL       ((writewatch_status)0xc0000001)

#define WRITEWATCH_FLAG_RESET 1  /* WRITE_WATCH_FLAG_RESET */

enum writewatch_backend
{
    WRITEWATCH_BACKEND_NONE,     /* not initialised, or forced backend unavailable */
    WRITEWATCH_BACKEND_UFFD,     /* userfaultfd WP-async + PAGEMAP_SCAN */
    WRITEWATCH_BACKEND_MPROTECT, /* read-only pages + host write faults */
};

/* The host's recursive address-space lock.  enter() saves in *state what
 * leave() restores (the signal mask). */
struct writewatch_lock
{
    void (*enter)(sigset_t *state);
    void (*leave)(sigset_t *state);
};

/* What writewatch_init() found, for diagnostics (tools/wwinfo). */
struct writewatch_info
{
    enum writewatch_backend backend;
    char reason[512];          /* why this backend was chosen, in plain words */
    int uffd_errno;            /* 0 when userfaultfd() and UFFDIO_API worked */
    uint64_t uffd_features;    /* features the kernel offered (UFFDIO_API) */
    int pagemap_scan_errno;    /* 0 when PAGEMAP_SCAN works */
};

/* Takes the host's lock (NULL: the module's own).  The backend is chosen
 * from WRITEWATCH_BACKEND and the kernel when the first allocation is
 * watched, or writewatch_get_info() asks; the choice and its reason are
 * logged then.  The backend is WRITEWATCH_BACKEND_NONE only when a forced
 * one is unavailable; watching then fails with STATUS_NOT_SUPPORTED. */
void writewatch_init(const struct writewatch_lock *lock);
void writewatch_get_info(struct writewatch_info *info);
const char *writewatch_backend_name(enum writewatch_backend backend);

/* unix_prot is the protection the host mapped the allocation with. */
writewatch_status writewatch_add_allocation(void *base, size_t size, int unix_prot);
void writewatch_remove_allocation(void *base);
writewatch_status writewatch_set_protection(void *base, size_t size, int unix_prot);
writewatch_status writewatch_latch(void *base, size_t size);
writewatch_status writewatch_decommit(void *base, size_t size);
writewatch_status writewatch_discard(void *base, size_t size);

/* Returns nonzero when addr lies in a write-watched allocation.  It takes no
 * lock, so that asking about unwatched memory costs nothing: call it with
 * the host's lock held (Wine: inside the virtual memory section). */
int writewatch_is_watched(const void *addr);

writewatch_status writewatch_get_write_watch(uint32_t flags, void *base, size_t size, void **addresses,
                                             uintptr_t *count, uint32_t *granularity);
writewatch_status writewatch_reset_write_watch(void *base, size_t size);

int writewatch_handle_fault(void *addr);
int writewatch_lend_buffer(void *base, size_t size);
void writewatch_buffer_written(void *base, size_t size, size_t written);

#endif /* WRITEWATCH_H */
