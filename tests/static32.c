/*
 * static32: a static 32-bit Linux program, built with -m32 where the
 * compiler can; tests/run-tests runs it beside tools/can-run-32bit, whose
 * answer must agree with whether it ran.
 */

#include <stdio.h>

int main(void)
{
    printf("a 32-bit program ran\n");
    return 0;
}
