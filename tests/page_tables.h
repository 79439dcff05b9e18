/*
 * The page tables a process holds, as Linux counts them (VmPTE), for the
 * native tests and for Windows programs under Wine alike.
 */

#ifndef WRITEWATCH_PAGE_TABLES_H
#define WRITEWATCH_PAGE_TABLES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KiB of page tables from a /proc/self/status at path (under Wine through
 * the Z: drive); -1 where it cannot be read. */
static inline long page_table_kib(const char *path)
{
    char line[256];
    long kib = -1;
    FILE *status = fopen(path, "r");

    while (status && fgets(line, sizeof(line), status))
        if (!strncmp(line, "VmPTE:", 6)) kib = atol(line + 6);
    if (status) fclose(status);
    return kib;
}

#endif
