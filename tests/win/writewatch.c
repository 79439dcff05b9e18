/*
 * The write-watch API as Windows programs see it, through kernel32: the
 * semantics of tests/semantics.md, whose numbers the comments give; each
 * expectation is Windows' (Wine's own tests that pass there, and
 * Microsoft's documentation, as semantics.md says).  Built with winegcc
 * and Wine's harness, and run under Wine by tools/wine-tests:
 *
 *   writewatch.exe writewatch [CASE...]
 *                                 the semantics, one case after another, or
 *                                 the cases named
 *   writewatch.exe sparse_1gib    every other page of 1 GiB written
 *   writewatch.exe threads        calls beside other threads (threads.c)
 *   writewatch.exe suspend        threads suspended inside calls, and the
 *                                 stop-the-world stress (threads.c)
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <windef.h>
#include <winbase.h>
#include <winreg.h>
#include <winternl.h>

#include "wine/test.h"
#include "wintest.h"

static void test_allocation(void)
{
    MEMORY_BASIC_INFORMATION info;
    char *base;

    base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    expect_pages(0, base, 16, 64, NONE);
    SetLastError(0xdeadbeef);
    ok(!VirtualAlloc(NULL, 16 * PAGE, MEM_WRITE_WATCH, PAGE_READWRITE), "watch without reserve\n");
    ok(GetLastError() == ERROR_INVALID_PARAMETER, "error %lu\n", GetLastError());
    ok(VirtualQuery(base, &info, sizeof(info)) == sizeof(info), "VirtualQuery\n");
    ok(info.State == MEM_COMMIT && info.Type == MEM_PRIVATE && info.Protect == PAGE_READWRITE &&
       info.AllocationProtect == PAGE_READWRITE && info.RegionSize == 16 * PAGE,
       "state %lx type %lx protect %lx size %Iu\n", info.State, info.Type, info.Protect, info.RegionSize);
    VirtualFree(base, 0, MEM_RELEASE);
}

static void test_writes_and_order(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    volatile char sum = 0;
    int i;

    base[9 * PAGE] = 1;
    base[2 * PAGE + 100] = 1;
    memcpy(base + 5 * PAGE - 3, "abcdefgh", 8);
    for (i = 0; i < 16; i++) sum += base[i * PAGE + 1];
    expect_pages(0, base, 16, 64, 2, 4, 5, 9);
    expect_pages(WRITE_WATCH_FLAG_RESET, base, 16, 2, 2, 4);
    expect_pages(0, base, 16, 64, 5, 9);
    ok(!ResetWriteWatch(base, 16 * PAGE), "ResetWriteWatch failed\n");
    expect_pages(0, base, 16, 64, NONE);
    VirtualFree(base, 0, MEM_RELEASE);
}

static void test_errors(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    ULONG_PTR count = 64;
    ULONG granularity;
    char stack[16];

    base[0] = 1;
    EXPECT_ERROR(GetWriteWatch(0, base, PAGE, results, NULL, &granularity), ERROR_NOACCESS);
    EXPECT_ERROR(GetWriteWatch(0, base, PAGE, results, &count, NULL), ERROR_NOACCESS);
    count = 0;
    EXPECT_ERROR(GetWriteWatch(0, base, PAGE, NULL, &count, &granularity), ERROR_INVALID_PARAMETER);
    count = 64;
    EXPECT_ERROR(GetWriteWatch(0, base, 0, results, &count, &granularity), ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(GetWriteWatch(2, base, PAGE, results, &count, &granularity), ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(GetWriteWatch(0, base, PAGE, NULL, &count, &granularity), ERROR_NOACCESS);
    EXPECT_ERROR(GetWriteWatch(0, base, 32 * PAGE, results, &count, &granularity), ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(GetWriteWatch(0, base, 16 * PAGE + 1, results, &count, &granularity), ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(GetWriteWatch(0, stack, sizeof(stack), results, &count, &granularity), ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(GetWriteWatch(0, GetModuleHandleA(NULL), PAGE, results, &count, &granularity),
                 ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(ResetWriteWatch(base, 0), ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(ResetWriteWatch(stack, 1), ERROR_INVALID_PARAMETER);
    ok(count == 64, "a failed call changed the count\n");
    expect_pages(0, base, 16, 64, 0);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* 5, 7: outputs not aligned to their size are a datatype misalignment
 * (ERROR_NOACCESS), before anything is reset; a range that wraps around the
 * address space, 32 or 64 bits wide, is no watched allocation. */
static void test_misaligned_outputs_and_wrapping_ranges(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    static ULONG_PTR counts[2];
    static ULONG granularities[2];
    ULONG_PTR count = 64;
    ULONG granularity;

    base[PAGE] = 1;
    EXPECT_ERROR(GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, (void **)((char *)results + 1), &count,
                               &granularity), ERROR_NOACCESS);
    counts[1] = 64;
    EXPECT_ERROR(GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, results,
                               (ULONG_PTR *)((char *)&counts[1] - 2), &granularity), ERROR_NOACCESS);
    EXPECT_ERROR(GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, results, &count,
                               (ULONG *)((char *)&granularities[1] - 1)), ERROR_NOACCESS);
    EXPECT_ERROR(GetWriteWatch(0, base, (SIZE_T)0 - (SIZE_T)base + PAGE, results, &count, &granularity),
                 ERROR_INVALID_PARAMETER);
    EXPECT_ERROR(ResetWriteWatch(base, (SIZE_T)0 - (SIZE_T)base + PAGE), ERROR_INVALID_PARAMETER);
    ok(count == 64, "a failed call changed the count\n");
    expect_pages(0, base, 16, 64, 1);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* Protection changes are not writes, and latch what was written. */
static void test_protect_and_decommit(void)
{
    char *base = alloc_watched(16 * PAGE, 0, PAGE_NOACCESS);
    MEMORY_BASIC_INFORMATION info;
    ULONG_PTR count;
    ULONG granularity;
    DWORD old;

    expect_pages(0, base, 16, 64, NONE);
    ok(!ResetWriteWatch(base, 16 * PAGE), "reset of reserved pages\n");
    ok(VirtualAlloc(base, 16 * PAGE, MEM_COMMIT, PAGE_NOACCESS) == base, "commit\n");
    ok(VirtualProtect(base, 6 * PAGE, PAGE_READWRITE, &old), "protect\n");
    base[5 * PAGE] = 1;
    ok(VirtualProtect(base, 6 * PAGE, PAGE_NOACCESS, &old), "protect\n");
    expect_pages(0, base, 16, 64, 5);
    ok(!ResetWriteWatch(base, 16 * PAGE), "reset\n");
    expect_pages(0, base, 16, 64, NONE);

    ok(VirtualProtect(base, 16 * PAGE, PAGE_READWRITE, &old), "protect\n");
    base[2 * PAGE] = 1;
    ok(VirtualProtect(base, 16 * PAGE, PAGE_READONLY, &old), "protect\n");
    ok(VirtualQuery(base, &info, sizeof(info)) && info.Protect == PAGE_READONLY && info.RegionSize == 16 * PAGE,
       "protect %lx size %Iu\n", info.Protect, info.RegionSize);
    ok(VirtualProtect(base, 16 * PAGE, PAGE_READWRITE, &old), "protect\n");
    expect_pages(0, base, 16, 64, 2);
    ok(!ResetWriteWatch(base, 16 * PAGE), "reset\n");

    /* written and latched before the decommit: reported; written after: not */
    base[3 * PAGE] = 1;
    ok(VirtualProtect(base, 6 * PAGE, PAGE_READWRITE, &old), "protect\n");
    base[5 * PAGE] = 1;
    expect_pages(0, base, 16, 64, 3, 5);
    ok(VirtualFree(base, 16 * PAGE, MEM_DECOMMIT), "decommit\n");
    expect_pages(0, base, 16, 64, 3);
    ok(VirtualAlloc(base, 16 * PAGE, MEM_COMMIT, PAGE_READWRITE) == base, "recommit\n");
    ok(base[3 * PAGE] == 0, "recommitted memory is not zero\n");
    expect_pages(0, base, 16, 64, 3);
    base[4 * PAGE] = base[2 * PAGE] = base[6 * PAGE] = 1;
    expect_pages(WRITE_WATCH_FLAG_RESET, base, 16, 64, 2, 3, 4, 6);
    expect_pages(0, base, 16, 64, NONE);
    VirtualFree(base, 0, MEM_RELEASE);
    count = 64;
    SetLastError(0xdeadbeef);
    ok(GetWriteWatch(0, base, 16 * PAGE, results, &count, &granularity) == (UINT)-1 &&
       GetLastError() == ERROR_INVALID_PARAMETER, "a released range is still watched\n");
}

static volatile LONG guard_hits;

static LONG CALLBACK guard_handler(EXCEPTION_POINTERS *pointers)
{
    if (pointers->ExceptionRecord->ExceptionCode != STATUS_GUARD_PAGE_VIOLATION) return EXCEPTION_CONTINUE_SEARCH;
    InterlockedIncrement(&guard_hits);
    return EXCEPTION_CONTINUE_EXECUTION;
}

static void test_guard_page(void)
{
    char *base = alloc_watched(4 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    void *handler = AddVectoredExceptionHandler(TRUE, guard_handler);
    DWORD old;

    ok(VirtualProtect(base, 4 * PAGE, PAGE_READWRITE | PAGE_GUARD, &old), "VirtualProtect\n");

    guard_hits = 0;
    *(volatile char *)(base + PAGE) = 1;
    ok(guard_hits == 1, "%ld guard page violations\n", guard_hits);
    ok(base[PAGE] == 1, "the write did not complete\n");
    expect_pages(0, base, 4, 64, 1);
    RemoveVectoredExceptionHandler(handler);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* Synchronous reads mark the whole buffer, as Windows' probe does. */
static void test_read_file(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE), path[MAX_PATH], dir[MAX_PATH];
    static char data[2 * PAGE + 3];
    DWORD done;
    HANDLE file;

    GetTempPathA(sizeof(dir), dir);
    GetTempFileNameA(dir, "ww", 0, path);
    file = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_FLAG_DELETE_ON_CLOSE, NULL);
    ok(file != INVALID_HANDLE_VALUE, "CreateFile %lu\n", GetLastError());
    memset(data, 'x', sizeof(data));
    ok(WriteFile(file, data, sizeof(data), &done, NULL) && done == sizeof(data), "WriteFile\n");
    SetFilePointer(file, 0, NULL, FILE_BEGIN);

    ok(ReadFile(file, base, 16 * PAGE, &done, NULL) && done == sizeof(data), "ReadFile read %lu\n", done);
    ok(base[2 * PAGE + 2] == 'x', "data did not arrive\n");
    expect_pages(WRITE_WATCH_FLAG_RESET, base, 16, 64, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    ok(!ReadFile(INVALID_HANDLE_VALUE, base, 16 * PAGE, &done, NULL), "read of an invalid handle\n");
    expect_pages(0, base, 16, 64, NONE);
    CloseHandle(file);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* A pending pipe read marks the buffer; the data arriving later marks at
 * least the pages it lands in. */
static void test_read_pipe(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    HANDLE reader, writer;
    DWORD done;
    ULONG_PTR count = 64;
    ULONG granularity;

    ok(CreatePipe(&reader, &writer, NULL, 0), "CreatePipe\n");
    ok(WriteFile(writer, "hello", 5, &done, NULL), "WriteFile\n");
    ok(ReadFile(reader, base + 7 * PAGE + 10, 5, &done, NULL) && done == 5, "ReadFile\n");
    ok(!GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, 16 * PAGE, results, &count, &granularity), "GetWriteWatch\n");
    ok(count == 1 && results[0] == base + 7 * PAGE, "got %Iu pages\n", count);
    CloseHandle(reader);
    CloseHandle(writer);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* Sparse writes over 1 GiB: one page in two.  Tracking that splits a
 * mapping per written run (Wine 8.0) exceeds vm.max_map_count here. */
static void test_sparse_1gib(void)
{
    SIZE_T size = (SIZE_T)1 << 30, pages = size / PAGE, i, total = 0, wrong = 0;
    char *base = alloc_watched(size, MEM_COMMIT, PAGE_READWRITE);
    DWORD start = GetTickCount();

    if (!base) return;
    for (i = 0; i < pages; i += 2) base[i * PAGE] = 1;
    for (;;)
    {
        ULONG_PTR count = 8192, j;
        ULONG granularity;

        if (GetWriteWatch(WRITE_WATCH_FLAG_RESET, base, size, results, &count, &granularity))
        {
            ok(0, "GetWriteWatch failed: %lu\n", GetLastError());
            break;
        }
        for (j = 0; j < count; j++) wrong += results[j] != base + (total + j) * 2 * PAGE;
        total += count;
        if (count < 8192) break;
    }
    ok(total == pages / 2, "%Iu pages reported, expected %Iu\n", total, pages / 2);
    ok(!wrong, "%Iu pages out of place\n", wrong);
    trace("sparse 1 GiB: %lu pages written and collected in %lu ms\n", (unsigned long)total,
          GetTickCount() - start);
    expect_pages(0, base, pages, 64, NONE);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* A VirtualProtect that fails changes nothing: it latches no page, so a
 * decommit still clears what was written. */
static void test_failed_protect_latches_nothing(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    DWORD old;

    base[3 * PAGE] = 1;
    ok(!VirtualProtect(base, 16 * PAGE, 0x12345678, &old), "an invalid protection was accepted\n");
    ok(!VirtualProtect(base, 16 * PAGE, PAGE_READWRITE | PAGE_READONLY, &old), "two protections were accepted\n");
    expect_pages(0, base, 16, 64, 3);
    ok(VirtualFree(base + 3 * PAGE, PAGE, MEM_DECOMMIT), "decommit\n");
    expect_pages(0, base, 16, 64, NONE);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* MEM_RESET is not a write, and forgets no write. */
static void test_mem_reset_keeps_written_state(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);

    base[PAGE] = 1;
    ok(VirtualAlloc(base, 4 * PAGE, MEM_RESET, PAGE_READWRITE) == base, "MEM_RESET: %lu\n", GetLastError());
    expect_pages(0, base, 16, 64, 1);
    ok(!ResetWriteWatch(base, 16 * PAGE), "ResetWriteWatch\n");
    ok(VirtualAlloc(base, 16 * PAGE, MEM_RESET, PAGE_READWRITE) == base, "MEM_RESET: %lu\n", GetLastError());
    expect_pages(0, base, 16, 64, NONE);
    base[2 * PAGE] = 1;
    expect_pages(0, base, 16, 64, 2);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* Calls whose output the Windows server writes straight into clean watched
 * pages succeed, and the pages are written. */
static void test_server_replies_into_watched_memory(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    HANDLE event = CreateEventA(NULL, FALSE, FALSE, "writewatch-test-event");
    UNICODE_STRING name;
    NTSTATUS status;
    ULONG length;
    HKEY key;

    status = NtQueryObject(event, ObjectNameInformation, base + 2 * PAGE, PAGE, &length);
    ok(!status, "NtQueryObject: %#lx\n", status);
    status = NtQueryInformationProcess(GetCurrentProcess(), ProcessImageFileName, base + 5 * PAGE, PAGE, &length);
    ok(!status, "NtQueryInformationProcess: %#lx\n", status);
    ok(!RegOpenKeyExA(HKEY_LOCAL_MACHINE, "Software\\Microsoft\\Windows NT\\CurrentVersion", 0, KEY_READ, &key),
       "RegOpenKeyEx\n");
    RtlInitUnicodeString(&name, L"ProductName");
    status = NtQueryValueKey(key, &name, KeyValuePartialInformation, base + 9 * PAGE, PAGE, &length);
    ok(!status, "NtQueryValueKey: %#lx\n", status);
    expect_pages(0, base, 16, 64, 2, 5, 9);
    RegCloseKey(key);
    CloseHandle(event);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* WriteProcessMemory into the calling process writes the pages. */
static void test_write_process_memory_marks_pages(void)
{
    char *base = alloc_watched(16 * PAGE, MEM_COMMIT, PAGE_READWRITE);
    SIZE_T done = 0;

    ok(WriteProcessMemory(GetCurrentProcess(), base + 6 * PAGE + 10, "hello", 5, &done) && done == 5,
       "WriteProcessMemory: %lu\n", GetLastError());
    ok(!memcmp(base + 6 * PAGE + 10, "hello", 5), "the data did not arrive\n");
    expect_pages(0, base, 16, 64, 6);
    VirtualFree(base, 0, MEM_RELEASE);
}

/* Every other page of 512 MiB: tracking that splits a mapping per written
 * run needs 131,072 mappings, past vm.max_map_count.  Writes still land,
 * and every written page is reported (clean ones may be too). */
static void test_writes_past_the_mapping_limit(void)
{
    SIZE_T size = (SIZE_T)512 << 20, pages = size / PAGE, i, next = 0, missing = 0, reported = 0;
    char *base = alloc_watched(size, MEM_COMMIT, PAGE_READWRITE);

    if (!base) return;
    for (i = 0; i < pages; i += 2) base[i * PAGE] = 1;
    while (next < pages)
    {
        ULONG_PTR count = 8192, j;
        ULONG granularity;

        if (GetWriteWatch(0, base + next * PAGE, (pages - next) * PAGE, results, &count, &granularity))
        {
            ok(0, "GetWriteWatch failed: %lu\n", GetLastError());
            break;
        }
        for (j = 0; j < count; j++)
        {
            SIZE_T index = ((char *)results[j] - base) / PAGE;

            for (; next < index; next++) missing += next % 2 == 0;
            next = index + 1;
        }
        reported += count;
        if (count < 8192)
        {
            for (; next < pages; next++) missing += next % 2 == 0;
        }
    }
    ok(!missing, "%Iu written pages not reported\n", missing);
    ok(reported >= pages / 2 && reported <= pages, "%Iu pages reported\n", reported);
    VirtualFree(base, 0, MEM_RELEASE);
}

START_TEST(writewatch)
{
    static const struct test_case cases[] =
    {
        { "allocation", test_allocation },
        { "writes_and_order", test_writes_and_order },
        { "errors", test_errors },
        { "misaligned_outputs_and_wrapping_ranges", test_misaligned_outputs_and_wrapping_ranges },
        { "protect_and_decommit", test_protect_and_decommit },
        { "guard_page", test_guard_page },
        { "read_file", test_read_file },
        { "read_pipe", test_read_pipe },
        { "failed_protect_latches_nothing", test_failed_protect_latches_nothing },
        { "mem_reset_keeps_written_state", test_mem_reset_keeps_written_state },
        { "server_replies_into_watched_memory", test_server_replies_into_watched_memory },
        { "write_process_memory_marks_pages", test_write_process_memory_marks_pages },
        { "writes_past_the_mapping_limit", test_writes_past_the_mapping_limit },
    };

    run_cases(cases, ARRAY_SIZE(cases));
}

START_TEST(sparse_1gib)
{
    test_sparse_1gib();
}
