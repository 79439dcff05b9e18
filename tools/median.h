/*
 * The median the benchmarks report, shared by the native and the Windows
 * benchmark programs.
 */

#ifndef WRITEWATCH_MEDIAN_H
#define WRITEWATCH_MEDIAN_H

#include <stdlib.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Sorts values in place. */
static double median(double *values, int count)
{
    qsort(values, count, sizeof(*values), compare_doubles);
    return values[count / 2];
}

/* The q-quantile of sorted values, the nearest rank. */
static inline double sorted_quantile(const double *sorted, int count, double q)
{
    return sorted[(int)((count - 1) * q + 0.5)];
}

#endif
