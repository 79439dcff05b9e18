/*
 * The harness of the Windows-side tests: checks, the expected pages of a
 * GetWriteWatch call, and bounded waits.
 */

#ifndef WRITEWATCH_WINTEST_H
#define WRITEWATCH_WINTEST_H

#include <windows.h>

#define PAGE 4096
#define NONE -1

extern LONG passed, failed;
extern const char *current_test;
extern void *results[8192];

#define ok(condition, ...) ok_(__LINE__, (condition), __VA_ARGS__)
void __attribute__((format(printf, 3, 4))) ok_(int line, int condition, const char *format, ...);
/* Prints a line of the run's output with one write. */
void __attribute__((format(printf, 1, 2))) report(const char *format, ...);

/* VirtualAlloc(MEM_RESERVE | MEM_WRITE_WATCH | type) */
char *alloc_watched(SIZE_T size, DWORD type, DWORD protect);

/* Checks that GetWriteWatch returns exactly the listed pages. */
#define expect_pages(flags, base, pages, room, ...) \
    expect_pages_(__LINE__, flags, base, pages, room, (const int[]){ __VA_ARGS__, -1 })
void expect_pages_(int line, DWORD flags, char *base, SIZE_T pages, ULONG_PTR room, const int *expected);

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

void test_unwritable_outputs(void);
void test_array_in_clean_page_beside_protect(void);
void test_suspended_inside_a_call(void);
void test_decommit_and_release_race(void);
void test_stop_the_world(void);

#endif
