/*
 * The write-watch tests' helpers (wintest.h) on top of Wine's harness.
 */

#include <stdarg.h>
#include <string.h>
#include <windef.h>
#include <winbase.h>
#include <psapi.h>

#include "wine/test.h"
#include "wintest.h"

void *results[8192];

/* whether the command line, "program.exe test [case...]", selects a case:
 * every case when it names none */
static BOOL is_selected(const char *name)
{
    char **argv;
    int argc = winetest_get_mainargs(&argv), i;

    for (i = 2; i < argc; i++) if (!strcmp(argv[i], name)) return TRUE;
    return argc <= 2;
}

void run_cases(const struct test_case *cases, unsigned int count)
{
    unsigned int i;

    for (i = 0; i < count; i++)
    {
        if (!is_selected(cases[i].name)) continue;
        winetest_push_context("%s", cases[i].name);
        cases[i].run();
        winetest_pop_context();
    }
}

char *alloc_watched(SIZE_T size, DWORD type, DWORD protect)
{
    char *base = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_WRITE_WATCH | type, protect);

    ok(base != NULL, "VirtualAlloc failed: %lu\n", GetLastError());
    return base;
}

void expect_pages_(const char *file, int line, DWORD flags, char *base, SIZE_T pages, ULONG_PTR room,
                   const int *expected)
{
    ULONG_PTR count = room, n = 0, i;
    ULONG granularity = 0;
    UINT ret;

    while (expected[n] >= 0) n++;
    ret = GetWriteWatch(flags, base, pages * PAGE, results, &count, &granularity);
    ok_(file, line)(ret == 0, "GetWriteWatch failed: %lu\n", GetLastError());
    ok_(file, line)(granularity == PAGE, "granularity %lu\n", granularity);
    ok_(file, line)(count == n, "count %Iu, expected %Iu\n", count, n);
    for (i = 0; i < count && i < n; i++)
        ok_(file, line)(results[i] == base + expected[i] * PAGE, "entry %Iu is page %Id, expected %d\n", i,
            ((char *)results[i] - base) / PAGE, expected[i]);
}

static struct
{
    HANDLE thread;
    const char *name;
} suspects[4];

void name_in_hang_reports(HANDLE thread, const char *name)
{
    int i;

    for (i = 0; i < 4; i++)
    {
        if (suspects[i].thread && suspects[i].thread != thread) continue;
        suspects[i].thread = name ? thread : NULL;
        suspects[i].name = name;
        return;
    }
}

/* Says where a thread stands: the mapped file and offset of its
 * instruction pointer (for a 32-bit program inside a system call, the
 * system call's stub).  It takes no loader lock: the hung thread may hold
 * it. */
static void report_thread(HANDLE thread, const char *name)
{
    MEMORY_BASIC_INFORMATION info = { 0 };
    char path[MAX_PATH] = "?", *file;
    CONTEXT context;
    ULONG_PTR ip;

    SuspendThread(thread);
    context.ContextFlags = CONTEXT_CONTROL;
    if (!GetThreadContext(thread, &context))
    {
        trace("hang report: %s: no context (error %lu)\n", name, GetLastError());
        return;
    }
#ifdef _WIN64
    ip = context.Rip;
#else
    ip = context.Eip;
#endif
    VirtualQuery((void *)ip, &info, sizeof(info));
    K32GetMappedFileNameA(GetCurrentProcess(), (void *)ip, path, sizeof(path));
    file = strrchr(path, '\\') ? strrchr(path, '\\') + 1 : path;
    trace("hang report: %s stands at %s+%#llx (ip %#llx)\n", name, file,
          (unsigned long long)(ip - (ULONG_PTR)info.AllocationBase), (unsigned long long)ip);
}

void hang(HANDLE thread, const char *what)
{
    int i;

    if (thread) report_thread(thread, what);
    for (i = 0; i < 4; i++)
        if (suspects[i].thread && suspects[i].thread != thread) report_thread(suspects[i].thread, suspects[i].name);
    TerminateProcess(GetCurrentProcess(), 1);
    ExitProcess(1);
}

void join_or_die(HANDLE thread, DWORD ms, const char *what)
{
    if (WaitForSingleObject(thread, ms) == WAIT_OBJECT_0)
    {
        CloseHandle(thread);
        return;
    }
    ok(0, "%s did not finish within %lu ms\n", what, ms);
    hang(thread, what);
}

