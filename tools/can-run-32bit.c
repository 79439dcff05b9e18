/*
 * can-run-32bit: tells whether this machine runs 32-bit x86 code, which a
 * 32-bit Windows program needs under Wine (WoW64 runs its code in the
 * 32-bit user code segment), and a 32-bit Linux program too.
 *
 * Some VMs and kernels cannot (a kernel booted with ia32_emulation=0, some
 * hypervisors): there the first 32-bit code faults, under stock Wine as
 * under ours.  A child process far-calls into the 32-bit code segment, runs
 * code whose result depends on the mode that decoded it, then makes a
 * 32-bit system call (int 0x80) from it; the parent reads what came back,
 * or which signal ended the child where.
 *
 * Prints "yes: ..." and exits 0, or "no: ..." and exits 1; exits 2 when
 * the probe itself could not run (then nothing is proven either way).
 * --code-segment SEL calls into selector SEL instead (the native tests:
 * 0x33 is the 64-bit code segment, 0x2b a data segment).
 */

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define USER32_CS 0x23
#define PROBE_SECONDS 10

/* what the child got to, in memory it shares with the parent */
struct probe_result
{
    int stage;        /* 0 not started, 1 the code segment, 2 the system call, 3 done */
    uint32_t value;   /* what the last stage returned */
};

#ifdef __x86_64__

/* Code for the probed segment.  0x48 is "dec eax" in 32-bit code and a REX
 * prefix (to a nop) in 64-bit code: the first returns MODE_MARK - 1 only
 * where it ran as 32-bit code.  The second returns getpid() through the
 * i386 system call (20) minus one, in 32-bit code. */
#define MODE_MARK 0x3232
static const unsigned char mode_code[] = { 0xb8, 0x32, 0x32, 0x00, 0x00, 0x48, 0x90, 0xcb };
static const unsigned char syscall_code[] = { 0xb8, 0x14, 0x00, 0x00, 0x00, 0xcd, 0x80, 0x48, 0x90, 0xcb };

/* the code page, then a writable page: the saved stack pointer at its start, the stack at its end */
enum { TRAMPOLINE = 0x000, TARGET = 0x100, FAR_POINTER = 0x200, PAGE_BYTES = 0x1000, SAVED_RSP = PAGE_BYTES };

static unsigned char *put_bytes(unsigned char *p, const void *bytes, size_t size)
{
    memcpy(p, bytes, size);
    return p + size;
}

static unsigned char *put_u32(unsigned char *p, uint32_t value)
{
    return put_bytes(p, &value, sizeof(value));
}

/* A 64-bit function below 4 GiB: it keeps the registers the C ABI
 * preserves (a mode switch leaves their upper halves undefined), moves to a
 * stack below 4 GiB, far-calls TARGET in selector and returns its eax. */
static void write_trampoline(unsigned char *page, uint16_t selector)
{
    static const unsigned char push_saved[] = { 0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57 };
    static const unsigned char pop_saved[] = { 0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3 };
    static const unsigned char save_rsp[] = { 0x48, 0x89, 0x24, 0x25 };     /* mov [disp32], rsp */
    static const unsigned char load_rsp[] = { 0x48, 0x8b, 0x24, 0x25 };     /* mov rsp, [disp32] */
    static const unsigned char far_call[] = { 0xff, 0x1c, 0x25 };           /* lcall [disp32] */
    uint32_t base = (uint32_t)(uintptr_t)page;
    unsigned char *p = page + TRAMPOLINE;

    p = put_bytes(p, push_saved, sizeof(push_saved));
    p = put_u32(put_bytes(p, save_rsp, sizeof(save_rsp)), base + SAVED_RSP);
    *p++ = 0xbc;                                                           /* mov esp, imm32 */
    p = put_u32(p, base + 2 * PAGE_BYTES);
    p = put_u32(put_bytes(p, far_call, sizeof(far_call)), base + FAR_POINTER);
    p = put_u32(put_bytes(p, load_rsp, sizeof(load_rsp)), base + SAVED_RSP);
    put_bytes(p, pop_saved, sizeof(pop_saved));
    put_bytes(put_u32(page + FAR_POINTER, base + TARGET), &selector, sizeof(selector));
}

/* runs code in selector through the trampoline, and returns its eax */
static uint32_t call_in_segment(unsigned char *page, uint16_t selector, const unsigned char *code, size_t size)
{
    uint32_t (*trampoline)(void) = (uint32_t (*)(void))(void *)(page + TRAMPOLINE);

    if (mprotect(page, PAGE_BYTES, PROT_READ | PROT_WRITE)) _exit(2);
    write_trampoline(page, selector);
    memcpy(page + TARGET, code, size);
    if (mprotect(page, PAGE_BYTES, PROT_READ | PROT_EXEC)) _exit(2);
    return trampoline();
}

/* the child: each stage says it started before it runs, so that a signal
 * tells the parent where it came; a fault ends it whatever handlers it
 * inherited (a sanitizer's would exit instead) */
static void run_probe(struct probe_result *result, uint16_t selector)
{
    static const int faults[] = { SIGSEGV, SIGBUS, SIGILL, SIGALRM };
    struct sigaction default_action = { .sa_handler = SIG_DFL };
    unsigned char *page = mmap(NULL, 2 * PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
                               -1, 0);
    size_t i;

    if (page == MAP_FAILED) _exit(2);
    for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) sigaction(faults[i], &default_action, NULL);
    alarm(PROBE_SECONDS);
    result->stage = 1;
    result->value = call_in_segment(page, selector, mode_code, sizeof(mode_code));
    if (result->value != MODE_MARK - 1) _exit(0);
    result->stage = 2;
    result->value = call_in_segment(page, selector, syscall_code, sizeof(syscall_code));
    if (result->value != (uint32_t)getpid() - 1) _exit(0);
    result->stage = 3;
    _exit(0);
}

static const char *stage_name(int stage, char *buffer, size_t size, uint16_t selector)
{
    if (stage == 2) return "its 32-bit system call (int 0x80)";
    snprintf(buffer, size, "a far call into code segment %#x", selector);
    return buffer;
}

/* says what the child's end shows; returns 0 for "yes", 1 for "no" */
static int report(const struct probe_result *result, int status, uint16_t selector)
{
    char name[64];
    const char *stage = stage_name(result->stage, name, sizeof(name), selector);
    int32_t value = (int32_t)result->value + 1;

    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
    {
        printf("no: %s did not come back within %d s\n", stage, PROBE_SECONDS);
        return 1;
    }
    if (WIFSIGNALED(status))
    {
        printf("no: %s faulted (%s)\n", stage, strsignal(WTERMSIG(status)));
        return 1;
    }
    if (result->stage == 1)
    {
        printf("no: %s ran, but as %s code, not 32-bit code\n", stage,
               result->value == MODE_MARK ? "64-bit" : "unknown");
        return 1;
    }
    if (result->stage == 2)
    {
        printf("no: %s returned %d (%s), not the process id\n", stage,
               value, value < 0 && value > -4096 ? strerror(-value) : "?");
        return 1;
    }
    printf("yes: a far call into code segment %#x ran 32-bit code, and its 32-bit system call (int 0x80) "
           "answered\n", selector);
    return 0;
}

static int probe(uint16_t selector)
{
    struct probe_result *result = mmap(NULL, sizeof(*result), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                                       -1, 0);
    int status;
    pid_t child;

    if (result == MAP_FAILED || (child = fork()) < 0)
    {
        printf("the probe could not start: %s\n", strerror(errno));
        return 2;
    }
    if (!child) run_probe(result, selector);
    if (waitpid(child, &status, 0) != child)
    {
        printf("the probe lost its child: %s\n", strerror(errno));
        return 2;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status))
    {
        printf("the probe could not map executable memory below 4 GiB (exit status %d)\n", WEXITSTATUS(status));
        return 2;
    }
    return report(result, status, selector);
}

#elif defined(__i386__)

static int probe(uint16_t selector)
{
    (void)selector;
    printf("yes: this probe is itself 32-bit code, and it runs\n");
    return 0;
}

#else

static int probe(uint16_t selector)
{
    (void)selector;
    printf("no: this is not an x86 machine\n");
    return 1;
}

#endif

int main(int argc, char **argv)
{
    unsigned long selector = USER32_CS;
    char *end;

    if (argc == 3 && !strcmp(argv[1], "--code-segment"))
        selector = strtoul(argv[2], &end, 0);
    if (argc != 1 && (argc != 3 || strcmp(argv[1], "--code-segment") || !*argv[2] || *end || selector > 0xffff))
    {
        fprintf(stderr, "usage: %s [--code-segment SELECTOR]\n", argv[0]);
        return 2;
    }
    return probe(selector);
}
