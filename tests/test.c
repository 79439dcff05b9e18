/*
 * Test runner: runs every test of the suite, or those named on the command
 * line, and ends with "N passed, N failed".
 *
 *   writewatch_tests [TEST...]
 *
 * --init-fault and --start-up are modes the tests run in a process of
 * their own.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/mman.h>

#include "writewatch_private.h"
#include "host.h"
#include "test.h"

unsigned int tests_passed, tests_failed;
static pthread_mutex_t results_mutex = PTHREAD_MUTEX_INITIALIZER;
static const char *current_test;
/* argv[0], not /proc/self/exe: under valgrind that is valgrind's tool */
static const char *program;

extern const struct test writewatch_tests[], fault_tests[], fuzz_tests[];
static const struct test * const suites[] = { writewatch_tests, fault_tests, fuzz_tests };

void ok_(const char *file, int line, int condition, const char *format, ...)
{
    va_list args;

    pthread_mutex_lock(&results_mutex);
    if (condition) tests_passed++;
    else
    {
        tests_failed++;
        fprintf(stderr, "%s:%d: %s: test failed: ", file, line, current_test);
        va_start(args, format);
        vfprintf(stderr, format, args);
        va_end(args);
    }
    pthread_mutex_unlock(&results_mutex);
}

void run_mode(const char *arguments, char *out, size_t size)
{
    char command[512];
    FILE *pipe;

    snprintf(command, sizeof(command), "'%s' %s 2>/dev/null", program, arguments);
    out[0] = 0;
    if (!(pipe = popen(command, "r"))) return;
    if (!fgets(out, size, pipe)) out[0] = 0;
    pclose(pipe);
}

static int is_selected(const char *name, int argc, char **argv)
{
    int i;

    if (argc < 2) return 1;
    for (i = 1; i < argc; i++) if (!strcmp(argv[i], name)) return 1;
    return 0;
}

/* --init-fault OP ERRNO BACKEND: initialises the module with one kernel
 * operation failing, and prints what it chose (see tests/faults.c). */
static int init_with_fault(char **argv)
{
    struct writewatch_info info;

    setenv("WRITEWATCH_BACKEND", argv[4], 1);
    writewatch_inject_error(atoi(argv[2]), atoi(argv[3]));
    host_init();
    writewatch_get_info(&info);
    printf("%s %d %d\n", writewatch_backend_name(info.backend), info.failed, info.err);
    return 0;
}

/* The descriptors the kernel backend opens: its userfaultfd and pagemap. */
static int count_kernel_descriptors(void)
{
    char path[64], target[256];
    int fd, count = 0;
    ssize_t len;

    for (fd = 0; fd < 1024; fd++)
    {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if ((len = readlink(path, target, sizeof(target) - 1)) < 0) continue;
        target[len] = 0;
        count += strstr(target, "userfaultfd") || strstr(target, "/pagemap");
    }
    return count;
}

/* --start-up: the module's descriptors after writewatch_init(), after the
 * first watched allocation, and those its backend needs (see
 * test_start_up_waits_for_watched_memory). */
static int start_up(void)
{
    size_t size = 16 * sysconf(_SC_PAGESIZE);
    char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct writewatch_info info;
    int at_start;

    host_init();
    at_start = count_kernel_descriptors();
    if (base == MAP_FAILED || writewatch_add_allocation(base, size, PROT_READ | PROT_WRITE)) return 1;
    writewatch_get_info(&info);
    printf("%d %d %d\n", at_start, count_kernel_descriptors(), info.backend == WRITEWATCH_BACKEND_UFFD ? 2 : 0);
    return 0;
}

int main(int argc, char **argv)
{
    struct writewatch_info info;
    const struct test *test;
    size_t suite;

    program = argv[0];
    if (argc == 5 && !strcmp(argv[1], "--init-fault")) return init_with_fault(argv);
    if (argc == 2 && !strcmp(argv[1], "--start-up")) return start_up();
    host_init();
    writewatch_get_info(&info);
    printf("writewatch tests: backend %s", writewatch_backend_name(info.backend));
    if (info.failed) printf(" (kernel operation %d failed: %s)", info.failed, strerror(info.err));
    printf("\n");
    if (info.backend == WRITEWATCH_BACKEND_NONE)
    {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    for (suite = 0; suite < sizeof(suites) / sizeof(suites[0]); suite++)
    {
        for (test = suites[suite]; test->name; test++)
        {
            unsigned int failed = tests_failed;

            if (!is_selected(test->name, argc, argv)) continue;
            current_test = test->name;
            test->run();
            printf("%-40s %s\n", test->name, tests_failed == failed ? "ok" : "FAILED");
            fflush(stdout);
        }
    }
    printf("%u passed, %u failed\n", tests_passed, tests_failed);
    return tests_failed != 0;
}
