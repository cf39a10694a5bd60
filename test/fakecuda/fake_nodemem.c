/* SPDX-License-Identifier: Apache-2.0 */
/* Device memory shared by the processes of a node (FAKECUDA_NODE_MEM=1), as
 * a real GPU's is: what one process holds leaves less for another, and a
 * process's memory comes back when it dies (the tests of borrowed memory,
 * docs/KUBERNETES.md "Borrowing reserved memory"). Without it each process
 * has the whole device to itself, as before.
 *
 * Each process publishes what it holds per device in FAKECUDA_DIR/mem.<pid>
 * and keeps an exclusive flock on it for its life; a file whose lock can be
 * taken belongs to a dead process and is removed. Called with the fake's
 * lock held; the processes do not lock each other (tests ask one at a time). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_internal.h"

static int mine = -2; /* -2: not looked at yet; -1: off */
static pid_t mine_pid;

static int node_mem_on(void)
{
    if (mine != -2 && mine_pid == getpid())
        return mine >= 0;
    const char *v = getenv("FAKECUDA_NODE_MEM");
    mine = -1;
    mine_pid = getpid();
    if (!v || strcmp(v, "1") != 0)
        return 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/mem.%d", fake.dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    /* Readable by every process of the node whatever the umask, as a real
     * GPU's memory is one for all its users: a remote slice's server runs
     * as a user of its own and must see what a pod's process holds. */
    if (fd >= 0 && fchmod(fd, 0644) != 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "fakecuda: cannot publish node memory in %s: %s\n", path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    mine = fd;
    return 1;
}

/* What the other live processes of the node hold on `dev`. */
unsigned long long fake_node_others(int dev)
{
    if (!node_mem_on())
        return 0;
    DIR *d = opendir(fake.dir);
    if (!d)
        return 0;
    char self[32];
    snprintf(self, sizeof self, "mem.%d", (int)getpid());
    unsigned long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "mem.", 4) != 0 || strcmp(e->d_name, self) == 0)
            continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) { /* its process is gone */
            unlinkat(dirfd(d), e->d_name, 0);
            close(fd);
            continue;
        }
        unsigned long long v = 0;
        if (pread(fd, &v, sizeof v, (off_t)dev * (off_t)sizeof v) == (ssize_t)sizeof v)
            sum += v;
        close(fd);
    }
    closedir(d);
    return sum;
}

/* Publishes what this process holds on `dev` now. */
void fake_node_publish(int dev)
{
    if (!node_mem_on())
        return;
    unsigned long long v = fake.dev[dev].used;
    if (pwrite(mine, &v, sizeof v, (off_t)dev * (off_t)sizeof v) != (ssize_t)sizeof v)
        fprintf(stderr, "fakecuda: cannot publish node memory: %s\n", strerror(errno));
}
