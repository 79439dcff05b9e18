/*
 * wwdemo: a garbage collector's use of write watches, as a Windows program.
 *
 * A 64 MiB watched heap; each frame the "mutator" writes a scattered set of
 * pages and the "collector" asks GetWriteWatch, with reset, which pages were
 * written.  It prints what it saw and whether every answer was exact.
 * Built with mingw-w64 and run under Wine by tools/demo.
 */

#include <windows.h>
#include <stdio.h>
#include <string.h>

#define PAGE 4096
#define HEAP_PAGES 16384
#define FRAMES 8

static void *found[HEAP_PAGES];
static unsigned char written[HEAP_PAGES];

int main(void)
{
    char *heap = VirtualAlloc(NULL, HEAP_PAGES * PAGE, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE);
    unsigned int seed = 1, frame, exact_frames = 0;
    LARGE_INTEGER frequency, start, end;

    if (!heap)
    {
        printf("VirtualAlloc(MEM_WRITE_WATCH) failed: error %lu\n", GetLastError());
        return 1;
    }
    QueryPerformanceFrequency(&frequency);
    printf("writewatch demo: a %d MiB watched heap, %d frames\n", HEAP_PAGES * PAGE >> 20, FRAMES);

    for (frame = 1; frame <= FRAMES; frame++)
    {
        unsigned int i, writes = 0, percent = frame * 2;
        ULONG_PTR count = HEAP_PAGES, wrong = 0, expected = 0;
        ULONG granularity;

        memset(written, 0, sizeof(written));
        for (i = 0; i < HEAP_PAGES; i++)
        {
            seed = seed * 1103515245 + 12345;
            if ((seed >> 16) % 100 >= percent) continue;
            heap[(size_t)i * PAGE + (seed % PAGE)] = (char)frame;
            written[i] = 1;
            writes++;
        }
        QueryPerformanceCounter(&start);
        if (GetWriteWatch(WRITE_WATCH_FLAG_RESET, heap, HEAP_PAGES * PAGE, found, &count, &granularity))
        {
            printf("GetWriteWatch failed: error %lu\n", GetLastError());
            return 1;
        }
        QueryPerformanceCounter(&end);
        for (i = 0; i < HEAP_PAGES; i++)
        {
            if (!written[i]) continue;
            if (expected >= count || found[expected] != heap + (size_t)i * PAGE) wrong++;
            expected++;
        }
        if (count != expected) wrong++;
        exact_frames += !wrong;
        printf("frame %u: wrote %u pages (%u%%), GetWriteWatch found %lu in %.3f ms: %s\n", frame, writes,
               percent, (unsigned long)count,
               (double)(end.QuadPart - start.QuadPart) * 1000.0 / frequency.QuadPart, wrong ? "WRONG" : "exact");
    }
    printf("%u of %u frames exact\n", exact_frames, FRAMES);
    VirtualFree(heap, 0, MEM_RELEASE);
    return exact_frames == FRAMES ? 0 : 1;
}
