/*
 * What the write-watch tests need beside Wine's harness (wine/test.h): the
 * expected pages of a GetWriteWatch call, and bounded waits that end a
 * hung run with a report of where its threads stand.
 */

#ifndef WRITEWATCH_WINTEST_H
#define WRITEWATCH_WINTEST_H

#include <stdarg.h>
#include <windef.h>
#include <winbase.h>

#include "wine/test.h"

#define PAGE 4096
#define NONE -1

struct test_case
{
    const char *name;
    void (*run)(void);
};

/* Runs each case, or those the command line names after the test's name,
 * each case's name the context of its checks. */
void run_cases(const struct test_case *cases, unsigned int count);

/* the array GetWriteWatch answers in, for the tests that need a large one */
extern void *results[8192];

/* VirtualAlloc(MEM_RESERVE | MEM_WRITE_WATCH | type) */
char *alloc_watched(SIZE_T size, DWORD type, DWORD protect);

/* Checks that GetWriteWatch, with room for room pages, returns exactly the
 * listed pages of base (NONE for none). */
#define expect_pages(flags, base, pages, room, ...) \
    expect_pages_(__FILE__, __LINE__, flags, base, pages, room, (const int[]){ __VA_ARGS__, -1 })
void expect_pages_(const char *file, int line, DWORD flags, char *base, SIZE_T pages, ULONG_PTR room,
                   const int *expected);

#define EXPECT_ERROR(call, error) \
    do { SetLastError(0xdeadbeef); ok((call) == (UINT)-1 && GetLastError() == (error), \
         #call ": error %lu\n", GetLastError()); } while (0)

/* Waits for a thread to end within ms; a thread that does not is hung, and
 * since it cannot be joined, the run ends there, failed, with a hang report
 * that says where the hung thread, and each thread named for hang reports,
 * stand. */
void join_or_die(HANDLE thread, DWORD ms, const char *what);
/* Ends the run with a hang report: thread (may be NULL) hung doing what. */
void hang(HANDLE thread, const char *what) __attribute__((noreturn));
/* Names a thread, or with NULL forgets it, for the hang reports. */
void name_in_hang_reports(HANDLE thread, const char *name);

#endif
