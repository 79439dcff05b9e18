/*
 * writewatch: Windows write watches (MEM_WRITE_WATCH, NtGetWriteWatch,
 * NtResetWriteWatch) for a Unix host such as Wine's ntdll.
 *
 * Host interface
 * ==============
 * The host owns the address space: it maps, protects and unmaps memory, and
 * tells the module what it did, in page-aligned ranges:
 *
 *   writewatch_init()               once, first: the host's lock (below).
 *   writewatch_add_allocation()     a MEM_WRITE_WATCH allocation was mapped
 *                                   with unix_prot; no page of it is written.
 *   writewatch_set_protection()     instead of mprotect() on watched pages.
 *   writewatch_latch()              a VirtualProtect succeeded: Windows keeps
 *                                   the written state of its pages across a
 *                                   decommit.
 *   writewatch_decommit()           the pages were replaced by a fresh
 *                                   PROT_NONE mapping (MEM_DECOMMIT).
 *   writewatch_remove_allocation()  the allocation was unmapped.
 *   writewatch_is_watched()         whether an address is watched.
 *   writewatch_get_write_watch()    NtGetWriteWatch and NtResetWriteWatch
 *   writewatch_reset_write_watch()  for the current process, with the
 *                                   caller's values.
 *
 * Writes the kernel backend records by itself need three more entries on
 * the fallback, which removes write access from clean pages:
 *
 *   writewatch_handle_fault()       from the host's SIGSEGV handler, for a
 *                                   write fault: nonzero when resolved.
 *   writewatch_lend_buffer()        before a system call that failed with
 *                                   EFAULT on watched pages is made again:
 *                                   nonzero when it lent them write access.
 *   writewatch_buffer_written()     after that call, or after the host wrote
 *                                   behind the tracking (WriteProcessMemory):
 *                                   marks the pages of the bytes written and
 *                                   takes back what was lent.
 *
 * For MEM_RESET, the host madvise()s watched pages with MADV_FREE, which
 * keeps their page table entries and with them the kernel's written state
 * (MADV_DONTNEED zaps both).  Statuses are NTSTATUS values.  The backend is chosen when the first
 * allocation is watched: WRITEWATCH_BACKEND=uffd or mprotect forces one,
 * auto (the default) takes the kernel's where userfaultfd WP-async and
 * PAGEMAP_SCAN work.  The module installs no signal handler and maps no
 * memory but a two-page probe then.
 *
 * Locking
 * =======
 * There is one lock, the host's recursive address-space lock, given to
 * writewatch_init() (Wine: the virtual memory section, which blocks the
 * signals Wine suspends threads with).  Every entry takes it for itself, so
 * the host may call them with it held or not, with three rules:
 *
 *   - writewatch_get_write_watch() must be called WITHOUT it.  It touches
 *     the caller's count, granularity and array only outside it: first a
 *     probe of every output page (a store that changes nothing, as Windows'
 *     ProbeForWrite does), then the scan under the lock into the module's
 *     memory, then the copy out.  A fault in the probe or the copy is the
 *     host's to turn into STATUS_ACCESS_VIOLATION; no lock is held then, and
 *     a fault in the probe comes before anything is reset.
 *   - writewatch_lend_buffer(), the system call it is for and
 *     writewatch_buffer_written() run under one hold of the lock, so that no
 *     other thread changes the protection of the lent pages between them.
 *   - writewatch_is_watched() takes no lock, so that asking about unwatched
 *     memory costs nothing: call it with the lock held.
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
    WRITEWATCH_BACKEND_NONE,     /* WRITEWATCH_BACKEND=uffd, and the kernel's is unavailable */
    WRITEWATCH_BACKEND_UFFD,     /* userfaultfd WP-async + PAGEMAP_SCAN */
    WRITEWATCH_BACKEND_MPROTECT, /* read-only pages + the host's write faults */
};

/* The kernel operations the kernel backend starts with. */
enum writewatch_kernel_op
{
    WRITEWATCH_OP_NONE,
    WRITEWATCH_OP_USERFAULTFD,
    WRITEWATCH_OP_UFFDIO_API,     /* with UFFD_FEATURE_WP_ASYNC and WP_UNPOPULATED */
    WRITEWATCH_OP_OPEN_PAGEMAP,
    WRITEWATCH_OP_REGISTER,
    WRITEWATCH_OP_WRITEPROTECT,
    WRITEWATCH_OP_PAGEMAP_SCAN,
    WRITEWATCH_OP_SELF_TEST,      /* its probe pages, or a wrong answer (EIO) */
    WRITEWATCH_OP_COUNT
};

/* The host's recursive address-space lock.  enter() saves in *state what
 * leave() restores (the signal mask). */
struct writewatch_lock
{
    void (*enter)(sigset_t *state);
    void (*leave)(sigset_t *state);
};

/* The backend chosen and, where the kernel's was refused, the operation
 * that failed and its errno (tools/wwinfo says what they mean). */
struct writewatch_info
{
    enum writewatch_backend backend;
    enum writewatch_kernel_op failed;
    int err;
};

void writewatch_init(const struct writewatch_lock *lock);
/* Chooses the backend if no allocation did yet. */
void writewatch_get_info(struct writewatch_info *info);
const char *writewatch_backend_name(enum writewatch_backend backend);

writewatch_status writewatch_add_allocation(void *base, size_t size, int unix_prot);
void writewatch_remove_allocation(void *base);
writewatch_status writewatch_set_protection(void *base, size_t size, int unix_prot);
writewatch_status writewatch_latch(void *base, size_t size);
writewatch_status writewatch_decommit(void *base, size_t size);
int writewatch_is_watched(const void *addr);

writewatch_status writewatch_get_write_watch(uint32_t flags, void *base, size_t size, void **addresses,
                                             uintptr_t *count, uint32_t *granularity);
writewatch_status writewatch_reset_write_watch(void *base, size_t size);

int writewatch_handle_fault(void *addr);
int writewatch_lend_buffer(void *base, size_t size);
void writewatch_buffer_written(void *base, size_t size, size_t written);

#endif /* WRITEWATCH_H */
