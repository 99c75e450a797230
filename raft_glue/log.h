/* One-line event log: "2026-11-24T19:20:01.123Z INFO  member 1: became leader".
 *
 * Every line carries UTC time with milliseconds and a level, is written with
 * one write(2) so lines from one process never interleave, and goes to
 * stderr. The level threshold is process-wide (bl_log_set_level). */
#ifndef BALLAST_LOG_H
#define BALLAST_LOG_H

enum bl_log_level { BL_LOG_DEBUG = 0, BL_LOG_INFO, BL_LOG_WARN, BL_LOG_ERROR };

/* Set the lowest level that is written (default BL_LOG_INFO). */
void bl_log_set_level(int level);

/* Parse "debug", "info", "warn", "error"; returns -1 if unknown. */
int bl_log_parse_level(const char *s);

/* Write one line at @level. A trailing newline is added. */
void bl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define BL_DEBUG(...) bl_log(BL_LOG_DEBUG, __VA_ARGS__)
#define BL_INFO(...)  bl_log(BL_LOG_INFO, __VA_ARGS__)
#define BL_WARN(...)  bl_log(BL_LOG_WARN, __VA_ARGS__)
#define BL_ERROR(...) bl_log(BL_LOG_ERROR, __VA_ARGS__)

#endif /* BALLAST_LOG_H */
