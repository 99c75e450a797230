/* A check of canonical/raft 0.15's open log segments before raft_start
 * (see segcheck.c): refuse a corrupt entry that libraft would silently drop
 * together with every entry after it, and prepare a torn tail so that
 * libraft truncates it instead of crashing. */
#ifndef BALLAST_SEGCHECK_H
#define BALLAST_SEGCHECK_H

#include "error.h"

/* Check the open segments ("open-N") of the uv Raft log in @raft_dir.
 * Returns 0 when every open segment is a run of valid batches followed by
 * zeros, or ends in a torn tail (a damaged last batch with nothing valid
 * after it, in the last open segment holding data). A torn tail cut short
 * by the end of the file is padded with zeros, which libraft then
 * truncates as it does any torn tail. Returns BL_ECORRUPT, with what was
 * found where in @errmsg (BL_ERRMSG_SIZE bytes), when a damaged batch is
 * followed by a valid one (in the same or a later open segment), and BL_EIO
 * when a segment cannot be read or padded. Closed segments are left to
 * libraft, which refuses a damaged one itself. A missing @raft_dir is 0. */
int bl_segcheck_open_segments(const char *raft_dir, char *errmsg);

#endif /* BALLAST_SEGCHECK_H */
