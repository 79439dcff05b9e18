/*
 * Random GetWriteWatch / ResetWriteWatch calls, writes, VirtualProtect,
 * decommit, commit and MEM_RESET, checked against an independent model of
 * the rules (tests/semantics.md): every status, every returned page, and
 * that a rejected call writes nothing and changes no watched state.  Each
 * page has a live and a latched written state (16).
 * WRITEWATCH_FUZZ_CALLS sets the number of calls.
 */

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "host.h"
#include "test.h"

#define ARRAY_ENTRIES 96
#define SENTINEL ((void *)0x6b6b6b6b)

struct model_allocation
{
    char *base;
    size_t pages;
    unsigned char live[64];
    unsigned char latched[64];
    unsigned char committed[64];
    unsigned char writable[64];
};

static struct model_allocation model[3];
static unsigned int seed = 4242;
static unsigned long mismatches;

static uint64_t random_bits(void)
{
    return ((uint64_t)rand_r(&seed) << 33) ^ ((uint64_t)rand_r(&seed) << 11) ^ rand_r(&seed);
}

static size_t random_below(size_t n)
{
    return random_bits() % n;
}

static char *random_base(void)
{
    static char stack_byte;
    struct model_allocation *alloc = &model[random_below(3)];

    switch (random_below(10))
    {
    case 0: return NULL;
    case 1: return &stack_byte;
    case 2: return (char *)(uintptr_t)random_bits();
    case 3: return alloc->base - page + random_below(page);
    case 4: return alloc->base + alloc->pages * page;
    default: return alloc->base + random_below(alloc->pages) * page + (random_below(4) ? 0 : random_below(page));
    }
}

static size_t random_size(void)
{
    switch (random_below(10))
    {
    case 0: return 0;
    case 1: return SIZE_MAX - random_below(page);
    case 2: return (size_t)random_bits();
    case 3: return 1 + random_below(8);
    default: return 1 + random_below(80 * page);
    }
}

/* The model's answer to "which allocation holds the whole rounded range". */
static struct model_allocation *model_range(const char *base, size_t size, size_t *first, size_t *last)
{
    uintptr_t start = (uintptr_t)base, end;
    int i;

    if (!size || size - 1 > UINTPTR_MAX - start) return NULL;
    end = start + (size - 1);
    if (end / page == UINTPTR_MAX / page) return NULL;
    for (i = 0; i < 3; i++)
    {
        uintptr_t alloc_start = (uintptr_t)model[i].base, alloc_end = alloc_start + model[i].pages * page;

        if (start < alloc_start || end >= alloc_end) continue;
        *first = (start - alloc_start) / page;
        *last = (end - alloc_start) / page + 1;
        return &model[i];
    }
    return NULL;
}

static writewatch_status expected_get_status(uint32_t flags, char *base, size_t size, void **addresses,
                                             uintptr_t *count, uint32_t *granularity)
{
    size_t first, last;

    if (!count || !granularity) return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if ((uintptr_t)count % sizeof(*count) || (uintptr_t)granularity % sizeof(*granularity))
        return WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT;
    if (!*count || !size || (flags & ~1u)) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    if (!addresses) return WRITEWATCH_STATUS_ACCESS_VIOLATION;
    if ((uintptr_t)addresses % sizeof(void *)) return WRITEWATCH_STATUS_DATATYPE_MISALIGNMENT;
    if (!model_range(base, size, &first, &last)) return WRITEWATCH_STATUS_INVALID_PARAMETER;
    return WRITEWATCH_STATUS_SUCCESS;
}

/* Compares every allocation's reported pages with the model. */
static void check_whole_state(void)
{
    void *array[64];
    int i;

    for (i = 0; i < 3; i++)
    {
        uintptr_t count = 64, n = 0, j;

        get_watch(0, model[i].base, model[i].pages * page, array, &count);
        for (j = 0; j < model[i].pages; j++)
        {
            if (!model[i].live[j] && !model[i].latched[j]) continue;
            if (n >= count || array[n] != model[i].base + j * page) mismatches++;
            n++;
        }
        if (n != count) mismatches++;
    }
}

static void fuzz_get(void)
{
    static void *storage[ARRAY_ENTRIES + 1];
    static uintptr_t count_storage[2];
    static uint32_t granularity_storage[2];
    uint32_t flags = random_below(8) ? random_below(2) : (uint32_t)random_bits();
    char *base = random_base();
    size_t size = random_size(), first, last, index;
    void **addresses = random_below(20) ? storage : random_below(2) ? NULL : (void **)((char *)storage + 4);
    uintptr_t *count = random_below(20) ? count_storage : random_below(2) ? NULL :
                       (uintptr_t *)((char *)count_storage + 2);
    uint32_t *granularity = random_below(30) ? granularity_storage : NULL;
    uintptr_t room = random_below(20) ? 1 + random_below(ARRAY_ENTRIES) : 0, pos = 0;
    writewatch_status expected, status;
    struct model_allocation *alloc;

    if (count && !((uintptr_t)count % sizeof(*count))) *count = room;
    if (granularity) *granularity = 77;
    storage[0] = SENTINEL;
    expected = expected_get_status(flags, base, size, addresses, count, granularity);
    status = writewatch_get_write_watch(flags, base, size, addresses, count, granularity);
    if (status != expected)
    {
        if (mismatches++ < 10)
            printf("get(%#x, %p, %#zx, %p, %p, %p): %#x, expected %#x\n", flags, base, size, (void *)addresses,
                   (void *)count, (void *)granularity, (unsigned int)status, (unsigned int)expected);
        return;
    }
    if (status)
    {
        if ((granularity && *granularity != 77) || storage[0] != SENTINEL ||
            (count == count_storage && *count != room))
            mismatches++;
        if (flags & 1) check_whole_state();
        return;
    }

    alloc = model_range(base, size, &first, &last);
    for (index = first; index < last && pos < room; index++)
    {
        if (!alloc->live[index] && !alloc->latched[index]) continue;
        if (pos >= *count || addresses[pos] != alloc->base + index * page) mismatches++;
        pos++;
        if (flags & 1) alloc->live[index] = alloc->latched[index] = 0;
    }
    if (*count != pos || *granularity != page) mismatches++;
}

static void fuzz_reset(void)
{
    char *base = random_base();
    size_t size = random_size(), first, last;
    struct model_allocation *alloc = model_range(base, size, &first, &last);
    writewatch_status status = writewatch_reset_write_watch(base, size);

    if (status != (alloc ? WRITEWATCH_STATUS_SUCCESS : WRITEWATCH_STATUS_INVALID_PARAMETER))
    {
        mismatches++;
        return;
    }
    if (!alloc)
    {
        check_whole_state();
        return;
    }
    memset(alloc->live + first, 0, last - first);
    memset(alloc->latched + first, 0, last - first);
}

static void fuzz_write(void)
{
    struct model_allocation *alloc = &model[random_below(3)];
    size_t index = random_below(alloc->pages);

    if (!alloc->committed[index] || !alloc->writable[index]) return;
    alloc->base[index * page + random_below(page)]++;
    alloc->live[index] = 1;
}

/* A random page range of a random allocation. */
static struct model_allocation *random_pages(size_t *first, size_t *last)
{
    struct model_allocation *alloc = &model[random_below(3)];

    *first = random_below(alloc->pages);
    *last = *first + 1 + random_below(alloc->pages - *first);
    return alloc;
}

/* What the host does and the model says of it: VirtualProtect of committed
 * pages latches their live state; MEM_DECOMMIT clears the live state and
 * keeps the latched one; MEM_COMMIT sets nothing; MEM_RESET changes
 * nothing. */
static void fuzz_host_change(void)
{
    size_t first, last, index;
    struct model_allocation *alloc = random_pages(&first, &last);
    char *start = alloc->base + first * page;
    size_t size = (last - first) * page;
    int writable = random_below(2);

    switch (random_below(4))
    {
    case 0:
        for (index = first; index < last; index++) if (!alloc->committed[index]) return;
        host_protect(start, size, writable ? PROT_READ | PROT_WRITE : PROT_READ);
        for (index = first; index < last; index++)
        {
            alloc->latched[index] |= alloc->live[index];
            alloc->writable[index] = writable;
        }
        break;
    case 1:
        host_decommit(start, size);
        memset(alloc->live + first, 0, last - first);
        memset(alloc->committed + first, 0, last - first);
        break;
    case 2:
        host_commit(start, size, PROT_READ | PROT_WRITE);
        memset(alloc->committed + first, 1, last - first);
        memset(alloc->writable + first, 1, last - first);
        break;
    default:
        host_discard(start, size);
        break;
    }
}

static void test_fuzz_against_model(void)
{
    const char *env = getenv("WRITEWATCH_FUZZ_CALLS");
    unsigned long calls = env ? strtoul(env, NULL, 10) : 1000000, call;
    writewatch_status status;
    char *pair;
    int i;

    /* one allocation alone and two side by side */
    model[0].pages = 64;
    model[0].base = host_alloc(64 * page, PROT_READ | PROT_WRITE, &status);
    pair = mmap(NULL, 32 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (i = 1; i < 3; i++)
    {
        model[i].pages = 16;
        model[i].base = pair + (i - 1) * 16 * page;
        ok(!writewatch_add_allocation(model[i].base, 16 * page, PROT_NONE), "allocation %d\n", i);
        host_commit(model[i].base, 16 * page, PROT_READ | PROT_WRITE);
    }
    ok(model[0].base != NULL, "allocation failed with %#x\n", (unsigned int)status);
    if (!model[0].base) return;

    for (i = 0; i < 3; i++)
    {
        memset(model[i].committed, 1, sizeof(model[i].committed));
        memset(model[i].writable, 1, sizeof(model[i].writable));
    }
    mismatches = 0;
    for (call = 0; call < calls; call++)
    {
        if (!random_below(6)) fuzz_write();
        if (!random_below(40)) fuzz_host_change();
        if (random_below(4)) fuzz_get();
        else fuzz_reset();
    }
    check_whole_state();
    printf("fuzz: %lu calls, %lu mismatches with the model\n", calls, mismatches);
    ok(!mismatches, "%lu mismatches with the model\n", mismatches);

    host_free(model[0].base, 64 * page);
    for (i = 1; i < 3; i++) writewatch_remove_allocation(model[i].base);
    munmap(pair, 32 * page);
}

const struct test fuzz_tests[] =
{
    { "fuzz_against_model", test_fuzz_against_model },
    { NULL, NULL }
};
