/*
 * A native host for the writewatch module: it maps memory and drives the
 * module the way Wine's ntdll does, so that the tests can show the Windows
 * semantics without Wine.
 */

#ifndef WRITEWATCH_TEST_HOST_H
#define WRITEWATCH_TEST_HOST_H

#include <stddef.h>
#include <signal.h>
#include <sys/types.h>
#include "writewatch.h"

extern size_t page;

/* writewatch_init() with the host's address-space lock, which blocks
 * HOST_SUSPEND_SIGNAL as Wine's does, and the SIGSEGV handler that reports
 * write faults. */
void host_init(void);

/* The signal the host stops threads with (Wine uses SIGUSR1 too). */
#define HOST_SUSPEND_SIGNAL SIGUSR1
void host_lock(sigset_t *state);
void host_unlock(sigset_t *state);

/* VirtualAlloc(MEM_RESERVE | MEM_WRITE_WATCH [| MEM_COMMIT]): prot 0 only
 * reserves.  Returns NULL with *status set when the module refuses. */
char *host_alloc(size_t size, int prot, writewatch_status *status);
/* VirtualAlloc(MEM_COMMIT) on reserved pages. */
void host_commit(char *base, size_t size, int prot);
/* VirtualProtect: the protection, then the latch of the written state
 * (a failed VirtualProtect latches nothing). */
void host_protect(char *base, size_t size, int prot);
/* VirtualAlloc(MEM_RESET), as the module asks of hosts: MADV_FREE. */
void host_discard(char *base, size_t size);
/* VirtualFree(MEM_DECOMMIT) and VirtualFree(MEM_RELEASE). */
void host_decommit(char *base, size_t size);
void host_free(char *base, size_t size);

/* read(2) into a buffer as Wine does: when the kernel cannot write the
 * buffer, the module lends it write access and marks what was read. */
ssize_t host_read(int fd, void *buffer, size_t size);

/* Runs fn(arg) and returns 1 when it raised an access violation (a fault the
 * module did not resolve), 0 when it completed. */
int host_faults(void (*fn)(void *), void *arg);

/* GetWriteWatch into a caller array; returns the status. */
writewatch_status get_watch(int flags, void *base, size_t size, void **addresses, uintptr_t *count);

/* NtGetWriteWatch as a system call: a fault on the caller's pointers gives
 * STATUS_ACCESS_VIOLATION, as Wine's system call dispatcher does. */
writewatch_status host_get_write_watch(uint32_t flags, void *base, size_t size, void **addresses,
                                       uintptr_t *count, uint32_t *granularity);

#endif
