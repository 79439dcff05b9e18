/*
 * The subset of Wine's debug channels the module uses, for native builds.
 * Inside Wine, Wine's own wine/debug.h is used instead.
 *
 * WINEDEBUG works as in Wine for one channel: "+writewatch" enables every
 * class, "warn+writewatch", "-all" and so on; err and fixme are on by default.
 */

#ifndef WRITEWATCH_NATIVE_WINE_DEBUG_H
#define WRITEWATCH_NATIVE_WINE_DEBUG_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

enum __wine_debug_class
{
    __WINE_DBCL_FIXME,
    __WINE_DBCL_ERR,
    __WINE_DBCL_WARN,
    __WINE_DBCL_TRACE,
};

struct __wine_debug_channel
{
    int initialized;
    unsigned char flags;
    const char *name;
};

static const char * const __wine_dbcl_names[] = { "fixme", "err", "warn", "trace" };

/* Applies one WINEDEBUG item such as "+all", "warn-writewatch" or "-all". */
static inline void __wine_dbg_apply_option(struct __wine_debug_channel *channel, const char *item, size_t len)
{
    unsigned char mask = 0xff;
    const char *op = memchr(item, '+', len);
    const char *minus = memchr(item, '-', len);
    size_t name_len, i;

    if (!op || (minus && minus < op)) op = minus;
    if (!op) return;
    for (i = 0; i < sizeof(__wine_dbcl_names) / sizeof(__wine_dbcl_names[0]); i++)
    {
        if (op - item == (long)strlen(__wine_dbcl_names[i]) && !memcmp(item, __wine_dbcl_names[i], op - item))
            mask = 1 << i;
    }
    name_len = len - (op + 1 - item);
    if (!(name_len == 3 && !memcmp(op + 1, "all", 3)) &&
        !(name_len == strlen(channel->name) && !memcmp(op + 1, channel->name, name_len)))
        return;
    if (*op == '+') channel->flags |= mask;
    else channel->flags &= ~mask;
}

static inline int __wine_dbg_enabled(struct __wine_debug_channel *channel, enum __wine_debug_class cls)
{
    if (!channel->initialized)
    {
        const char *env = getenv("WINEDEBUG"), *item, *end;

        channel->flags = (1 << __WINE_DBCL_FIXME) | (1 << __WINE_DBCL_ERR);
        for (item = env; item && *item; item = *end ? end + 1 : end)
        {
            end = strchr(item, ',');
            if (!end) end = item + strlen(item);
            __wine_dbg_apply_option(channel, item, end - item);
        }
        channel->initialized = 1;
    }
    return (channel->flags >> cls) & 1;
}

static inline void __attribute__((format(printf, 4, 5)))
__wine_dbg_log(const struct __wine_debug_channel *channel, enum __wine_debug_class cls,
               const char *function, const char *format, ...)
{
    char buffer[1024];
    int len;
    va_list args;

    len = snprintf(buffer, sizeof(buffer), "%04lx:%s:%s:%s ", (long)syscall(SYS_gettid),
                   __wine_dbcl_names[cls], channel->name, function);
    va_start(args, format);
    vsnprintf(buffer + len, sizeof(buffer) - len, format, args);
    va_end(args);
    fputs(buffer, stderr);
}

#define WINE_DEFAULT_DEBUG_CHANNEL(ch) \
    static struct __wine_debug_channel __wine_dbch_default = { 0, 0, #ch }

#define __WINE_DPRINTF(cls, ...) \
    do { if (__wine_dbg_enabled(&__wine_dbch_default, cls)) \
        __wine_dbg_log(&__wine_dbch_default, cls, __func__, __VA_ARGS__); } while (0)

#define TRACE(...) __WINE_DPRINTF(__WINE_DBCL_TRACE, __VA_ARGS__)
#define WARN(...)  __WINE_DPRINTF(__WINE_DBCL_WARN, __VA_ARGS__)
#define ERR(...)   __WINE_DPRINTF(__WINE_DBCL_ERR, __VA_ARGS__)
#define FIXME(...) __WINE_DPRINTF(__WINE_DBCL_FIXME, __VA_ARGS__)

#endif /* WRITEWATCH_NATIVE_WINE_DEBUG_H */
