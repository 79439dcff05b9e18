/*
 * A native host for the writewatch module: it maps memory and drives the
 * module the way Wine's ntdll does, so that the tests can show the Windows
 * semantics without Wine.
 */

#ifndef WRITEWATCH_TEST_HOST_H
#define WRITEWATCH_TEST_HOST_H

#include <stddef.h>
#include <sys/types.h>
#include "writewatch.h"

extern size_t page;

/* writewatch_init() and the SIGSEGV handler that reports write faults. */
void host_init(void);

/* VirtualAlloc(MEM_RESERVE | MEM_WRITE_WATCH [| MEM_COMMIT]): prot 0 only
 * reserves.  Returns NULL with *status set when the module refuses. */
char *host_alloc(size_t size, int prot, writewatch_status *status);
/* VirtualAlloc(MEM_COMMIT) on reserved pages. */
void host_commit(char *base, size_t size, int prot);
/* VirtualProtect. */
void host_protect(char *base, size_t size, int prot);
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

#endif
