/* SPDX-License-Identifier: Apache-2.0 */
/* Size limits on the host directories tenants can write: each slice's
 * ledger directory <root>/ledger/<key>, a remote slice's server's too
 * (docs/SECURITY.md). Without a limit a tenant fills
 * the host filesystem that holds them. Each becomes its own tmpfs, mounted
 * by the agent with a size and an inode count: a tenant that fills its
 * ledger gets ENOSPC there and nowhere else, and what it writes is memory
 * charged to its own container's cgroup.
 *
 * The kubelet bind-mounts these host paths into containers, so a mount the
 * agent makes must be visible in the host's mount namespace: from a
 * DaemonSet that takes a hostPath volume with mountPropagation:
 * Bidirectional (privileged). FX_DIR_LIMITS_SHARED checks that at start. */
#ifndef FX_NODE_DIRLIMIT_H
#define FX_NODE_DIRLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "flexpu/error.h"

/* OFF is 0, so that a zeroed configuration mounts nothing; flexpu-node's
 * default is SHARED. */
enum fx_dir_limits {
    FX_DIR_LIMITS_OFF = 0, /* plain directories on the host's filesystem */
    FX_DIR_LIMITS_SHARED,  /* tmpfs mounts; root must be on a shared mount */
    FX_DIR_LIMITS_LOCAL,   /* tmpfs mounts; the agent runs in the kubelet's namespace */
};

/* "shared", "local" or "off"; -1 otherwise. */
int fx_dir_limits_parse(const char *s, enum fx_dir_limits *out);

/* Calls fn for each mount of this process, in /proc/self/mountinfo's order:
 * its mount point (escapes undone) and its optional fields ("shared:1
 * master:2", "" for none); -1 when the file cannot be read. */
int fx_mountinfo_each(void (*fn)(const char *mnt, const char *optional, void *ctx), void *ctx);

/* Limits of the tmpfs of a slice's ledger directory for a slice of `ngpu`
 * GPUs. */
uint64_t fx_dir_ledger_bytes(size_t ngpu);
#define FX_DIR_LEDGER_INODES 256u

/* Mode SHARED: fails, naming the mount and the fix, unless the mount that
 * holds `root` propagates to its peers (the host). Other modes: 0. */
int fx_dir_limits_check(const char *root, enum fx_dir_limits m, struct flexpu_error *err);

/* 1 when `dir` is the root of a tmpfs mount, 0 when not, -1 when it cannot
 * be examined. */
int fx_dir_is_tmpfs_root(const char *dir);

/* Makes the existing directory `dir` a tmpfs of at most `bytes` and `inodes`
 * (nosuid, nodev, noexec) whose root has `mode`. Mode OFF does nothing; a
 * directory that already is a tmpfs root (the agent restarted while the
 * slice lived) is kept as it is. Refuses a directory that holds anything, so
 * that nothing a running container uses is hidden under the new mount. */
int fx_dir_limit(const char *dir, enum fx_dir_limits m, uint64_t bytes, unsigned inodes,
                 mode_t mode, struct flexpu_error *err);

/* Detaches the tmpfs mounted on `dir`, if `dir` is one (containers that
 * still have it keep their view until they end). */
void fx_dir_unlimit(const char *dir);

#endif
