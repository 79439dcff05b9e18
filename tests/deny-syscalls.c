/*
 * deny-syscalls WHAT COMMAND [ARG...]: runs COMMAND under a seccomp filter
 * that fails system calls the way a sandbox or a kernel would:
 *
 *   userfaultfd  userfaultfd(2) fails with EPERM, as the default profiles
 *                of Docker and Podman make it;
 *   i386         every 32-bit (int 0x80) system call fails with ENOSYS, as
 *                on a kernel that runs no 32-bit code: what
 *                tools/can-run-32bit must then say.
 */

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_X86_64
#elif defined(__i386__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_I386
#elif defined(__aarch64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_AARCH64
#endif

/* userfaultfd of the native system call table */
static struct sock_filter deny_userfaultfd[] =
{
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

/* every call of the i386 table */
static struct sock_filter deny_i386[] =
{
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

int main(int argc, char **argv)
{
    struct sock_fprog program = { sizeof(deny_userfaultfd) / sizeof(deny_userfaultfd[0]), deny_userfaultfd };

    if (argc >= 3 && !strcmp(argv[1], "i386"))
    {
        program.len = sizeof(deny_i386) / sizeof(deny_i386[0]);
        program.filter = deny_i386;
    }
    else if (argc < 3 || strcmp(argv[1], "userfaultfd"))
    {
        fprintf(stderr, "usage: %s userfaultfd|i386 COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program))
    {
        perror("seccomp");
        return 2;
    }
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
}
