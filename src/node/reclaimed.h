/* SPDX-License-Identifier: Apache-2.0 */
/* The borrower pods this node killed for an owner's memory (reclaim_mem.h),
 * remembered across restarts of the agent (issue 16). PreStartContainer
 * refuses their containers, so a borrower's restart does not take the
 * owner's memory again; without this file a restarted agent would admit
 * it. The set is the plugin's (plugin.c), kept under its mutex; this
 * module only reads and writes its file, <root>/reclaimed: one pod UID a
 * line, replaced whole (temporary file, fsync, rename: fx_file_replace),
 * so a crash leaves the old set or the new, never half of one. A mark goes
 * when its pod is gone from the agent's synced pod list. */
#ifndef FX_NODE_RECLAIMED_H
#define FX_NODE_RECLAIMED_H

#include <stdbool.h>

#include "flexpu/error.h"

#define FX_RECLAIMED_FILE "reclaimed"
/* At most this many marks (a node holds a few borrowers per GPU; a full
 * set drops its oldest, said in the log). */
#define FX_RECLAIMED_MAX 256
#define FX_RECLAIMED_UID_MAX 64 /* a UID's buffer: 63 characters at most */

struct fx_reclaimed {
    char uid[FX_RECLAIMED_MAX][FX_RECLAIMED_UID_MAX]; /* oldest first */
    int n;
};

/* Whether uid can be a mark: 1-63 letters, digits and dashes (a UUID as
 * the API server writes it). */
bool fx_reclaimed_uid_ok(const char *uid);

/* Reads <root>/reclaimed into s (emptied first). No file: an empty set, 0.
 * The file is checked: a regular file of at most FX_RECLAIMED_MAX lines
 * of FX_RECLAIMED_UID_MAX bytes (else FLEXPU_EINVAL naming it, s empty);
 * a line that is not a UID is skipped, and the first such line is named
 * in err with FLEXPU_EINVAL while s keeps the valid ones. */
int fx_reclaimed_load(struct fx_reclaimed *s, const char *root, struct flexpu_error *err);

bool fx_reclaimed_has(const struct fx_reclaimed *s, const char *uid);

/* Adds uid (once) and writes the file. A full set drops its oldest mark
 * first. On a write error s holds uid all the same (the agent refuses
 * the pod until it restarts) and err names the file. */
int fx_reclaimed_add(struct fx_reclaimed *s, const char *root, const char *uid,
                     struct flexpu_error *err);

/* Keeps the marks for which keep(uid, ctx) holds; writes the file when
 * one went. */
int fx_reclaimed_keep(struct fx_reclaimed *s, const char *root,
                      bool (*keep)(const char *uid, void *ctx), void *ctx,
                      struct flexpu_error *err);

#endif
