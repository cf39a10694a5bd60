/* SPDX-License-Identifier: Apache-2.0 */
#include "node/remote_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "node/slices.h"

int fx_remote_key_load(const char *path, struct fx_remote_key *key, struct flexpu_error *err)
{
    memset(key, 0, sizeof(*key));
    if (!path || !*path)
        return flexpu_error_set(err, FLEXPU_EINVAL, "--remote-key: no path given");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "--remote-key '%s': %s", path,
                                strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return flexpu_error_set(err, FLEXPU_EINVAL, "--remote-key '%s': not a regular file",
                                path);
    }
    /* The key makes every slice's token: a key others may read is every
     * tenant's key. */
    if (st.st_mode & 077) {
        close(fd);
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "--remote-key '%s': mode %03o lets others read or write it "
                                "(want 0400 or 0600: the Secret's defaultMode)",
                                path, (unsigned)(st.st_mode & 0777));
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, key->bytes + got, sizeof(key->bytes) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            OPENSSL_cleanse(key, sizeof(*key));
            return flexpu_error_set(err, FLEXPU_EIO, "--remote-key '%s': %s", path, strerror(e));
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == sizeof(key->bytes)) {
            close(fd);
            OPENSSL_cleanse(key, sizeof(*key));
            return flexpu_error_set(err, FLEXPU_EINVAL,
                                    "--remote-key '%s': longer than %d bytes", path,
                                    FX_REMOTE_KEY_MAX - 1);
        }
    }
    close(fd);
    while (got > 0 && (key->bytes[got - 1] == '\n' || key->bytes[got - 1] == '\r'))
        got--;
    if (got < FX_REMOTE_KEY_MIN) {
        OPENSSL_cleanse(key, sizeof(*key));
        return flexpu_error_set(err, FLEXPU_EINVAL,
                                "--remote-key '%s': %zu bytes, want at least %d", path, got,
                                FX_REMOTE_KEY_MIN);
    }
    key->len = got;
    return 0;
}

static int part_check(const char *v, const char *field, struct flexpu_error *err)
{
    if (!v || !*v || strchr(v, '|'))
        return flexpu_error_field(err, FLEXPU_EINVAL, field, v ? v : "", v ? strlen(v) : 0,
                                  "must be non-empty without '|'");
    return 0;
}

int fx_remote_token(const struct fx_remote_key *key, const char *uid, const char *gpu_node,
                    const char *gpu_uuid, char hex[FX_REMOTE_TOKEN_HEX + 1],
                    struct flexpu_error *err)
{
    hex[0] = 0;
    if (!key || key->len < FX_REMOTE_KEY_MIN)
        return flexpu_error_set(err, FLEXPU_EINVAL, "remote token: no cluster key");
    if (part_check(uid, "metadata.uid", err) || part_check(gpu_node, "remote.node", err) ||
        part_check(gpu_uuid, "gpus[0].uuid", err))
        return FLEXPU_EINVAL;
    char msg[600];
    int n = snprintf(msg, sizeof(msg), "%s|%s|%s", uid, gpu_node, gpu_uuid);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return flexpu_error_set(err, FLEXPU_EINVAL, "remote token: names too long");
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)msg, (size_t)n,
              mac, &maclen) ||
        maclen * 2 != FX_REMOTE_TOKEN_HEX)
        return flexpu_error_set(err, FLEXPU_EIO, "remote token: HMAC-SHA256 failed");
    for (unsigned i = 0; i < maclen; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

int fx_remote_token_write(const char *path, const char *hex, unsigned mode,
                          struct flexpu_error *err)
{
    char text[FX_REMOTE_TOKEN_HEX + 2];
    snprintf(text, sizeof(text), "%.*s\n", FX_REMOTE_TOKEN_HEX, hex);
    int rc = fx_file_replace(path, text, (mode_t)mode, err);
    OPENSSL_cleanse(text, sizeof(text));
    return rc;
}
