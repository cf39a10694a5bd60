/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/shmfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

/* Far larger than any layout: a bigger file is not one of ours. */
#define SHM_FILE_MAX_BYTES (64u << 20)

void fx_shm_header_init(struct fx_shm_header *h, uint32_t magic, uint32_t version,
                        uint32_t size)
{
    h->magic = magic;
    h->version = version;
    h->size = size;
}

void fx_shm_slot_owner(int32_t *pid, char comm[16], uint64_t *attach_ns)
{
    *pid = (int32_t)getpid();
    (void)prctl(PR_GET_NAME, comm, 0, 0, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *attach_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int fx_shm_lock_byte(int fd, long long at, int type, int wait)
{
    struct flock fl = {.l_type = (short)type, .l_whence = SEEK_SET, .l_start = (off_t)at,
                       .l_len = 1};
    int rc;
    do
        rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (rc < 0 && errno == EINTR);
    return rc;
}

int fx_shm_byte_locked(int fd, long long at)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)at, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return 1; /* cannot tell: never take a slot on doubt */
    return fl.l_type != F_UNLCK;
}

/* The OFD lock is polled, not waited for (F_OFD_SETLKW cannot time out):
 * first a few tries that only yield the CPU, since the lock is held for
 * microseconds between well-behaved processes, then sleeps growing from
 * 10 µs to 1 ms. The in-process mutex is waited for when `block_local`
 * (this process's own threads hold it for microseconds, or for at most one
 * such bounded wait), and polled like the file's lock otherwise (at exit). */
int fx_shm_writers_lock(pthread_mutex_t *local, int fd, uint64_t max_wait_ns, int block_local)
{
    uint64_t start = 0;
    long sleep_ns = 10 * 1000L;
    int tries = 0;
    int have_local = 0;
    for (;;) {
        if (!have_local)
            have_local = block_local ? pthread_mutex_lock(local) == 0
                                     : pthread_mutex_trylock(local) == 0;
        if (have_local) {
            if (fx_shm_lock_byte(fd, 0, F_WRLCK, 0) == 0)
                return 0;
            if (errno != EAGAIN && errno != EACCES) {
                pthread_mutex_unlock(local);
                return -1;
            }
        }
        uint64_t now = fx_mono_ns();
        if (!start)
            start = now;
        if (now - start >= max_wait_ns) {
            if (have_local)
                pthread_mutex_unlock(local);
            return -1;
        }
        if (tries++ < 64) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000 * 1000L)
            sleep_ns *= 2;
    }
}

void fx_shm_writers_unlock(pthread_mutex_t *local, int fd)
{
    fx_shm_lock_byte(fd, 0, F_UNLCK, 0);
    pthread_mutex_unlock(local);
}

static int create_file(const char *path, size_t size, void (*init)(void *, const void *),
                       const void *arg, unsigned mode, struct flexpu_error *err)
{
    /* A unique name: PIDs of different containers collide (often 1), and a
     * creator killed half-way leaves its file behind. */
    char tmp[4200];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return flexpu_error_set(err, FLEXPU_EINVAL, "%s: path too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    (void)fchmod(fd, mode);
    void *buf = calloc(1, size);
    int rc = 0;
    if (!buf) {
        rc = flexpu_error_set(err, FLEXPU_ENOMEM, "%s: out of memory", path);
    } else {
        init(buf, arg);
        ssize_t w = pwrite(fd, buf, size, 0);
        if (w != (ssize_t)size)
            rc = flexpu_error_set(err, FLEXPU_EIO, "%s: cannot write: %s", tmp,
                                  w < 0 ? strerror(errno) : "short write");
        else if (link(tmp, path) != 0 && errno != EEXIST)
            rc = flexpu_error_set(err, FLEXPU_EIO, "%s: cannot link: %s", path,
                                  strerror(errno));
    }
    free(buf);
    close(fd);
    unlink(tmp);
    return rc;
}

static const char *file_kind(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a plain file";
}

/* The file behind fd: regular, of a size one of ours can have. */
static int check_file(int fd, const char *path, const char *what, size_t size,
                      uint32_t version, struct flexpu_error *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s: not a regular file (%s); refusing it "
                                "as a %s", path, file_kind(sb.st_mode), what);
    if (sb.st_size > (off_t)SHM_FILE_MAX_BYTES)
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s: %lld bytes, too large for a flexpu %s; "
                                "refusing it", path, (long long)sb.st_size, what);
    if ((size_t)sb.st_size < size)
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s: %lld bytes, not a flexpu %u %s (%zu "
                                "bytes)", path, (long long)sb.st_size, version, what, size);
    return 0;
}

static int check_header(const struct fx_shm_header *h, const char *path, const char *what,
                        size_t size, uint32_t magic, uint32_t version, struct flexpu_error *err)
{
    if (h->magic == magic && h->version == version && h->size == size)
        return 0;
    return flexpu_error_set(err, FLEXPU_EPARSE, "%s: %s of another flexpu version (magic %#x "
                            "version %u size %u; expected version %u size %zu)", path, what,
                            h->magic, h->version, h->size, version, size);
}

static int check_and_map(int fd, const char *path, const char *what, size_t size,
                         uint32_t magic, uint32_t version, int writable, void **map_out,
                         struct flexpu_error *err)
{
    int rc = check_file(fd, path, what, size, version, err);
    if (rc)
        return rc;
    void *m = mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot map: %s", path, strerror(errno));
    /* Copied for the message before the mapping goes. */
    struct fx_shm_header h = *(const struct fx_shm_header *)m;
    rc = check_header(&h, path, what, size, magic, version, err);
    if (rc) {
        munmap(m, size);
        return rc;
    }
    *map_out = m;
    return 0;
}

/* O_NONBLOCK: open() of a FIFO returns at once (then refused) instead of
 * waiting for a writer that never comes. O_NOFOLLOW: a symlink planted under
 * the name fails with ELOOP. */
static int open_file(const char *path, int writable)
{
    return open(path, (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
}

static int open_error(const char *path, const char *what, struct flexpu_error *err)
{
    int e = errno;
    if (e == ELOOP)
        return flexpu_error_set(err, FLEXPU_EPARSE, "%s: a symbolic link, not a %s; refusing it",
                                path, what);
    return flexpu_error_set(err, e == ENOENT ? FLEXPU_ENOENT : FLEXPU_EIO,
                            "%s: cannot open: %s", path, strerror(e));
}

int fx_shm_map(const char *path, const char *what, size_t size, uint32_t magic,
               uint32_t version, int writable, void (*init)(void *buf, const void *arg),
               const void *arg, unsigned mode, int *fd_out, void **map_out,
               struct flexpu_error *err)
{
    int fd = -1;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        fd = open_file(path, writable);
        if (fd < 0 && errno == ENOENT && init && attempt == 0) {
            int rc = create_file(path, size, init, arg, mode, err);
            if (rc)
                return rc;
        } else if (fd < 0) {
            return open_error(path, what, err);
        }
    }
    int rc = check_and_map(fd, path, what, size, magic, version, writable, map_out, err);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int fx_shm_read(const char *path, const char *what, void *buf, size_t size, uint32_t magic,
                uint32_t version, int *fd_out, struct flexpu_error *err)
{
    int fd = open_file(path, 0);
    if (fd < 0)
        return open_error(path, what, err);
    int rc = check_file(fd, path, what, size, version, err);
    size_t got = 0;
    while (!rc && got < size) {
        ssize_t n = pread(fd, (char *)buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = flexpu_error_set(err, n < 0 ? FLEXPU_EIO : FLEXPU_EPARSE,
                                  "%s: %s read short (%zu of %zu bytes): %s", path, what, got,
                                  size, n < 0 ? strerror(errno) : "truncated while read");
        else
            got += (size_t)n;
    }
    if (!rc)
        rc = check_header(buf, path, what, size, magic, version, err);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}
