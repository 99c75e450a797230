/* The event log: format one line on the stack and write it at once.
 *
 * No allocation and no locks: the line is formatted into a fixed buffer
 * (long messages are cut and end in "..."), then written with a single
 * write(2), which keeps lines whole even with several threads. A failed
 * write is ignored: logging must never take the member down. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_level = BL_LOG_INFO;

static const char *const LEVEL_NAMES[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void bl_log_set_level(int level)
{
    log_level = level;
}

int bl_log_parse_level(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

void bl_log(int level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;
    int rv;

    if (level < log_level || level < BL_LOG_DEBUG || level > BL_LOG_ERROR) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    rv = snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L,
                  LEVEL_NAMES[level]);
    n += (size_t)rv;
    va_start(ap, fmt);
    rv = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (rv < 0) {
        return;
    }
    if ((size_t)rv >= sizeof line - n - 1) {
        n = sizeof line - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)rv;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        return;
    }
}
