/*
 * The native test host: see host.h.
 */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "host.h"

size_t page;

static __thread sigjmp_buf *fault_jump;

static void fail(const char *what)
{
    perror(what);
    abort();
}

static int is_write_fault(const ucontext_t *context)
{
#if defined(__x86_64__) || defined(__i386__)
    return (context->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#else
    return 1; /* the module checks the page's protection itself */
#endif
}

static void segv_handler(int sig, siginfo_t *info, void *context)
{
    if (is_write_fault(context) && writewatch_handle_fault(info->si_addr)) return;
    if (fault_jump) siglongjmp(*fault_jump, 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

void host_init(void)
{
    struct sigaction action;

    page = sysconf(_SC_PAGESIZE);
    writewatch_init();
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = segv_handler;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL)) fail("sigaction");
}

char *host_alloc(size_t size, int prot, writewatch_status *status)
{
    char *base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    if (base == MAP_FAILED) fail("mmap");
    if ((*status = writewatch_add_allocation(base, size, PROT_NONE)))
    {
        munmap(base, size);
        return NULL;
    }
    if (prot) host_commit(base, size, prot);
    return base;
}

static void check(writewatch_status status, const char *what)
{
    if (!status) return;
    fprintf(stderr, "%s failed with %#x\n", what, (unsigned int)status);
    abort();
}

void host_commit(char *base, size_t size, int prot)
{
    check(writewatch_set_protection(base, size, prot), "writewatch_set_protection");
}

void host_protect(char *base, size_t size, int prot)
{
    check(writewatch_latch(base, size), "writewatch_latch");
    check(writewatch_set_protection(base, size, prot), "writewatch_set_protection");
}

void host_decommit(char *base, size_t size)
{
    if (mmap(base, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
        fail("mmap");
    check(writewatch_decommit(base, size), "writewatch_decommit");
}

void host_free(char *base, size_t size)
{
    if (munmap(base, size)) fail("munmap");
    writewatch_remove_allocation(base);
}

ssize_t host_read(int fd, void *buffer, size_t size)
{
    ssize_t ret = read(fd, buffer, size);

    if (ret >= 0 || errno != EFAULT) return ret;
    writewatch_prepare_buffer(buffer, size);
    ret = read(fd, buffer, size);
    writewatch_complete_buffer(buffer, size, ret > 0 ? ret : 0);
    return ret;
}

int host_faults(void (*fn)(void *), void *arg)
{
    sigjmp_buf jump;

    if (sigsetjmp(jump, 1))
    {
        fault_jump = NULL;
        return 1;
    }
    fault_jump = &jump;
    fn(arg);
    fault_jump = NULL;
    return 0;
}

writewatch_status get_watch(int flags, void *base, size_t size, void **addresses, uintptr_t *count)
{
    uint32_t granularity;

    return writewatch_get_write_watch(flags, base, size, addresses, count, &granularity);
}
