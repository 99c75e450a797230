/* Driving a libuv loop from an in-process unit test: step it without
 * blocking, run it for a while or until a flag is set, each bounded by a
 * deadline so a test that waits in vain fails instead of hanging. Header
 * only (static inline); nothing here allocates. */
#ifndef BALLAST_TESTS_LOOP_H
#define BALLAST_TESTS_LOOP_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* uv_hrtime() @ms from now. */
static inline uint64_t tl_deadline(unsigned ms)
{
    return uv_hrtime() + (uint64_t)ms * 1000000;
}

/* Step @loop once without blocking, then wait up to 1 ms for @fd to be
 * readable (or just sleep 1 ms when @fd < 0). */
static inline void tl_step(uv_loop_t *loop, int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    uv_run(loop, UV_RUN_NOWAIT);
    poll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, 1);
}

/* Step @loop for @ms. */
static inline void tl_run_for(uv_loop_t *loop, unsigned ms)
{
    uint64_t end = tl_deadline(ms);
    while (uv_hrtime() < end) {
        tl_step(loop, -1);
    }
}

/* Step @loop until *@flag or @ms have passed; returns *@flag. */
static inline bool tl_run_until(uv_loop_t *loop, const bool *flag, unsigned ms)
{
    uint64_t end = tl_deadline(ms);
    while (!*flag && uv_hrtime() < end) {
        tl_step(loop, -1);
    }
    return *flag;
}

#endif /* BALLAST_TESTS_LOOP_H */
