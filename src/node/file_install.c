/* SPDX-License-Identifier: Apache-2.0 */
#include "node/file_install.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int fx_file_install(const char *from, const char *to, const char *option,
                    struct flexpu_error *err)
{
    char tmp[800];
    snprintf(tmp, sizeof(tmp), "%.700s.tmp", to);
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s '%s': %s", option, from, strerror(errno));
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (out < 0) {
        close(in);
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", tmp, strerror(errno));
    }
    char buf[65536];
    ssize_t n;
    int bad = 0;
    while (!bad && (n = read(in, buf, sizeof(buf))) != 0)
        bad = n < 0 || write(out, buf, (size_t)n) != n;
    close(in);
    /* Flushed before the rename, so a crash never leaves the new name on an
     * empty file. */
    bad |= fsync(out) != 0;
    bad |= close(out) != 0;
    /* rename: a container starting now maps the old file or the new. */
    if (bad || rename(tmp, to) != 0) {
        unlink(tmp);
        return flexpu_error_set(err, FLEXPU_EIO, "cannot install '%s': %s", to, strerror(errno));
    }
    return 0;
}
