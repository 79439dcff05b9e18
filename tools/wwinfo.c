/*
 * wwinfo: tells which write-watch backend this machine allows, and why.
 */

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "writewatch_private.h"

static const struct
{
    uint64_t bit;
    const char *name;
} features[] =
{
    { UFFD_FEATURE_WP_ASYNC, "WP_ASYNC" },
    { UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED" },
    { UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM" },
};

static void print_support(const char *what, int err)
{
    if (err) printf("%-16s no (%s)\n", what, strerror(err));
    else printf("%-16s yes\n", what);
}

static void print_kernel_support(const struct writewatch_info *info)
{
    size_t i;

    /* a context that opened but lacks features reports EINVAL with them */
    print_support("userfaultfd", info->uffd_features ? 0 : info->uffd_errno);
    printf("%-16s %#llx", "uffd features", (unsigned long long)info->uffd_features);
    for (i = 0; i < sizeof(features) / sizeof(features[0]); i++)
        if (info->uffd_features & features[i].bit) printf(" %s", features[i].name);
    printf("\n");
    if (info->backend == WRITEWATCH_BACKEND_UFFD || info->pagemap_scan_errno)
        print_support("PAGEMAP_SCAN", info->pagemap_scan_errno);
    else
        printf("%-16s not tried\n", "PAGEMAP_SCAN");
}

int main(void)
{
    struct writewatch_info info;
    struct utsname name;

    writewatch_init(NULL);
    writewatch_get_info(&info);
    if (!uname(&name)) printf("%-16s %s %s %s\n", "kernel", name.sysname, name.release, name.machine);
    if (info.uffd_errno || info.uffd_features) print_kernel_support(&info);
    else printf("%-16s not tried\n", "userfaultfd");
    printf("%-16s %s\n", "backend", writewatch_backend_name(info.backend));
    printf("%-16s %s\n", "reason", info.reason);
    return info.backend == WRITEWATCH_BACKEND_NONE;
}
