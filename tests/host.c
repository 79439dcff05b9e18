/*
 * The native test host: see host.h.
 */

#include <errno.h>
#include <pthread.h>
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
static pthread_mutex_t lock_mutex;

/* The host's address-space lock: recursive, and no thread is stopped while
 * it holds it. */
void host_lock(sigset_t *state)
{
    sigset_t block;

    sigemptyset(&block);
    sigaddset(&block, HOST_SUSPEND_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, state);
    pthread_mutex_lock(&lock_mutex);
}

void host_unlock(sigset_t *state)
{
    pthread_mutex_unlock(&lock_mutex);
    pthread_sigmask(SIG_SETMASK, state, NULL);
}

static const struct writewatch_lock lock_ops = { host_lock, host_unlock };

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
    pthread_mutexattr_t attr;

    page = sysconf(_SC_PAGESIZE);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&lock_mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    writewatch_init(&lock_ops);
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = segv_handler;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL)) fail("sigaction");
}

char *host_alloc(size_t size, int prot, writewatch_status *status)
{
    int unix_prot = prot ? prot : PROT_NONE;
    char *base = mmap(NULL, size, unix_prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    sigset_t state;

    /* as Wine does, a committed allocation is mapped with its protection */
    if (base == MAP_FAILED) fail("mmap");
    host_lock(&state);
    if ((*status = writewatch_add_allocation(base, size, unix_prot)))
    {
        munmap(base, size);
        base = NULL;
    }
    host_unlock(&state);
    return base;
}

static void check(writewatch_status status, const char *what)
{
    if (!status) return;
    fprintf(stderr, "%s failed with %#x\n", what, (unsigned int)status);
    abort();
}

/* Changes to the address space happen under the host's lock, as in Wine. */
void host_commit(char *base, size_t size, int prot)
{
    sigset_t state;

    host_lock(&state);
    check(writewatch_set_protection(base, size, prot), "writewatch_set_protection");
    host_unlock(&state);
}

void host_protect(char *base, size_t size, int prot)
{
    sigset_t state;

    host_lock(&state);
    check(writewatch_set_protection(base, size, prot), "writewatch_set_protection");
    check(writewatch_latch(base, size), "writewatch_latch");
    host_unlock(&state);
}

void host_discard(char *base, size_t size)
{
    if (madvise(base, size, MADV_FREE)) fail("madvise");
}

void host_decommit(char *base, size_t size)
{
    sigset_t state;

    host_lock(&state);
    if (mmap(base, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
        fail("mmap");
    check(writewatch_decommit(base, size), "writewatch_decommit");
    host_unlock(&state);
}

void host_free(char *base, size_t size)
{
    sigset_t state;

    host_lock(&state);
    if (munmap(base, size)) fail("munmap");
    writewatch_remove_allocation(base);
    host_unlock(&state);
}

/* As Wine's virtual_locked_read: the lend, the read and the marking under
 * one hold of the lock. */
ssize_t host_read(int fd, void *buffer, size_t size)
{
    ssize_t ret = read(fd, buffer, size);
    sigset_t state;
    int err;

    if (ret >= 0 || errno != EFAULT) return ret;
    host_lock(&state);
    writewatch_lend_buffer(buffer, size);
    ret = read(fd, buffer, size);
    err = errno;
    writewatch_buffer_written(buffer, size, ret > 0 ? ret : 0);
    host_unlock(&state);
    errno = err;
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

    return host_get_write_watch(flags, base, size, addresses, count, &granularity);
}

writewatch_status host_get_write_watch(uint32_t flags, void *base, size_t size, void **addresses,
                                       uintptr_t *count, uint32_t *granularity)
{
    writewatch_status status;
    sigjmp_buf jump, *outer = fault_jump;

    /* no lock is held and the handler defers nothing: the mask needs no
     * saving, which would cost a system call per call */
    if (sigsetjmp(jump, 0))
    {
        fault_jump = outer;
        return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    }
    fault_jump = &jump;
    status = writewatch_get_write_watch(flags, base, size, addresses, count, granularity);
    fault_jump = outer;
    return status;
}
