/* SPDX-License-Identifier: Apache-2.0 */
/* Files mapped by several processes (state.h's per-GPU arbitration state,
 * ledger.h's per-tenant memory ledger): opening one safely, creating it
 * whole, and the OFD locks that guard it.
 *
 * Whoever can write the directory may have put anything under the name: a
 * FIFO (whose blocking open never returns), a device, a symlink to a file
 * the opener may read, a file of another layout or of the wrong size. Only a
 * regular file of the expected size with the expected header is used, and
 * the error names the path and what was found instead. */
#ifndef FX_RUNTIME_SHMFILE_H
#define FX_RUNTIME_SHMFILE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "flexpu/error.h"

/* Every mapped layout begins with this header. */
struct fx_shm_header {
    uint32_t magic;
    uint32_t version;
    uint32_t size;               /* sizeof the layout of the writer */
    uint32_t reserved;
};

/* Opens `path` and maps `size` bytes of it (read-write when `writable`).
 * When the file does not exist and `init` is given, creates it first from
 * `size` bytes that init fills (a temporary file linked into place, so no
 * process ever maps a half-written header; losing the race to another
 * creator is fine), with mode `mode`. `what` names the kind of file in
 * errors ("state file", "ledger"). FLEXPU_ENOENT when absent and not
 * created; FLEXPU_EPARSE for anything that is not such a file. */
int fx_shm_map(const char *path, const char *what, size_t size, uint32_t magic,
               uint32_t version, int writable, void (*init)(void *buf, const void *arg),
               const void *arg, unsigned mode, int *fd_out, void **map_out,
               struct flexpu_error *err);

/* Reads the file `path` (a `what`, as for fx_shm_map) into buf, `size`
 * bytes with pread, and checks the header in that private copy: for a
 * reader of a file another user can write (the node agent reading tenants'
 * ledgers), which that user may truncate at any moment: a mapping would
 * then fault (SIGBUS) on the next read, a copy cannot. The file must be
 * regular and hold at least `size` bytes when read (a short read is
 * refused, naming the path). *fd_out: the file, still open (its OFD
 * locks are read through it). */
int fx_shm_read(const char *path, const char *what, void *buf, size_t size, uint32_t magic,
                uint32_t version, int *fd_out, struct flexpu_error *err);

/* The header of a layout being created (fx_shm_map's init). */
void fx_shm_header_init(struct fx_shm_header *h, uint32_t magic, uint32_t version,
                        uint32_t size);

/* Stamps a process slot the caller has just taken (its lock held) with
 * what every slot layout records of its owner (state.h's process slots,
 * the request file's, ledger.h's): this process's pid, its name and when it
 * attached (CLOCK_REALTIME). */
void fx_shm_slot_owner(int32_t *pid, char comm[16], uint64_t *attach_ns);

/* An OFD lock on one byte (wait: block until free). 0, or -1 with errno. */
int fx_shm_lock_byte(int fd, long long at, int type, int wait);

/* 1 when some open file description holds a lock on byte `at` (a process
 * holding its slot is alive); 1 also when that cannot be told. */
int fx_shm_byte_locked(int fd, long long at);

/* The writers' lock of a mapped file: `local` (threads of this process;
 * OFD locks exclude other open file descriptions, not threads sharing ours)
 * then an OFD lock on byte 0. It is held for microseconds by the processes
 * that share the file; what holds it longer is a process that is frozen or
 * hostile, and no wait for it is unbounded: a wait gives up after
 * `max_wait_ns` (0: do not wait at all) and returns -1 with nothing held.
 * block_local: wait for `local` without a bound (not at exit). */
int fx_shm_writers_lock(pthread_mutex_t *local, int fd, uint64_t max_wait_ns, int block_local);
void fx_shm_writers_unlock(pthread_mutex_t *local, int fd);

#endif
