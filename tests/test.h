/*
 * A minimal test harness in the spirit of Wine's include/wine/test.h.
 */

#ifndef WRITEWATCH_TEST_H
#define WRITEWATCH_TEST_H

#include <stdio.h>

extern unsigned int tests_passed, tests_failed;

void ok_(const char *file, int line, int condition, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
#define ok(condition, ...) ok_(__FILE__, __LINE__, (condition), __VA_ARGS__)

/* Runs the suite's own program in one of its modes (tests/test.c) and
 * puts the first line it printed in out, or "" if it printed nothing. */
void run_mode(const char *arguments, char *out, size_t size);

struct test
{
    const char *name;
    void (*run)(void);
};

#endif
