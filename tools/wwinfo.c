/*
 * wwinfo: tells which write-watch backend this machine allows, and why, in
 * words: the module records only which kernel operation failed, and how.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include "writewatch_private.h"

static const char * const op_names[WRITEWATCH_OP_COUNT] =
{
    "none", "userfaultfd()", "UFFDIO_API", "/proc/self/pagemap", "UFFDIO_REGISTER", "UFFDIO_WRITEPROTECT",
    "PAGEMAP_SCAN", "PAGEMAP_SCAN self-test",
};

/* What to do about a kernel that is too old. */
#define NEWER_KERNEL "writes are tracked with mprotect and signals instead, as stock Wine does. " \
    "For kernel write watches, boot Linux 6.7 or newer (on Debian bookworm: linux-image-amd64 " \
    "from bookworm-backports)"

static void lock_nothing(sigset_t *state)
{
    (void)state;  /* this program has one thread */
}

static const struct writewatch_lock no_lock = { lock_nothing, lock_nothing };

static int seccomp_filter_active(void)
{
    FILE *status = fopen("/proc/self/status", "re");
    char line[256];
    int filtered = 0;

    while (status && fgets(line, sizeof(line), status))
        if (!strncmp(line, "Seccomp:", 8)) filtered = atoi(line + 8) == 2;
    if (status) fclose(status);
    return filtered;
}

/* The features the kernel offers, asked of a context of our own: 0 when
 * userfaultfd() itself fails. */
static unsigned long long offered_features(void)
{
    struct uffdio_api api = { .api = UFFD_API };
    int fd = syscall(__NR_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);

    if (fd < 0) return 0;
    if (ioctl(fd, UFFDIO_API, &api)) api.features = 0;
    close(fd);
    return api.features;
}

/* Why the kernel backend was refused, in plain words. */
static void print_reason(const struct writewatch_info *info, const char *release, unsigned long long features)
{
    const char *why = "unexpected error";

    if (info->failed == WRITEWATCH_OP_NONE)
    {
        if (info->backend == WRITEWATCH_BACKEND_UFFD) printf("userfaultfd WP-async and PAGEMAP_SCAN available\n");
        else printf("forced by WRITEWATCH_BACKEND=mprotect\n");
        return;
    }
    if (info->failed == WRITEWATCH_OP_UFFDIO_API && info->err == EINVAL)
    {
        printf("this kernel (Linux %s) refused userfaultfd WP-async (it offers features %#llx), which Linux 6.7 "
               "added; %s\n", release, features, NEWER_KERNEL);
        return;
    }
    if (info->failed == WRITEWATCH_OP_PAGEMAP_SCAN && info->err == ENOTTY)
    {
        printf("this kernel (Linux %s) has no PAGEMAP_SCAN, which Linux 6.7 added; %s\n", release, NEWER_KERNEL);
        return;
    }
    if (info->failed == WRITEWATCH_OP_USERFAULTFD)
    {
        if (info->err == ENOSYS) why = "not built into this kernel (CONFIG_USERFAULTFD)";
        if (info->err == EPERM)
            why = seccomp_filter_active() ? "denied by a seccomp filter (a container or sandbox profile)"
                                          : "denied by the kernel's security policy";
        if (info->err == EINVAL) why = "kernel older than 5.11 (no UFFD_USER_MODE_ONLY)";
        if (info->err == EMFILE || info->err == ENFILE) why = "out of file descriptors";
    }
    printf("%s: %s: %s\n", op_names[info->failed], strerror(info->err), why);
}

int main(void)
{
    struct writewatch_info info;
    unsigned long long features = offered_features();
    struct utsname name;

    if (uname(&name)) strcpy(name.release, "unknown"), strcpy(name.machine, "");
    writewatch_init(&no_lock);
    writewatch_get_info(&info);
    printf("%-16s %s %s\n", "kernel", name.release, name.machine);
    printf("%-16s %#llx\n", "uffd features", features);
    printf("%-16s %s\n", "backend", writewatch_backend_name(info.backend));
    printf("%-16s ", "reason");
    print_reason(&info, name.release, features);
    return info.backend == WRITEWATCH_BACKEND_NONE;
}
