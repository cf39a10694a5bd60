/* SPDX-License-Identifier: Apache-2.0 */
#include "node/remote.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "node/remote_spawn.h"
#include "util/priority.h"

enum fx_remote_role fx_remote_role(const struct fx_allocation *al, const char *pod_node,
                                   const char *self)
{
    if (!al->remote_node[0] || !self)
        return FX_REMOTE_NONE;
    if (strcmp(al->remote_node, self) == 0)
        return FX_REMOTE_SERVE;
    return pod_node && strcmp(pod_node, self) == 0 ? FX_REMOTE_CLIENT : FX_REMOTE_NONE;
}

int fx_remote_server_plan(const struct fx_pod_spec *s, const char *uid,
                          const struct fx_allocation *al, const struct fx_node_inv *inv, int port,
                          struct fx_remote_server *out, struct flexpu_error *err)
{
    const char *field = "metadata.annotations[" FX_ANN_ALLOCATION "]";
    memset(out, 0, sizeof(*out));
    if (!al->remote_node[0] || al->ngpu < 1 || al->ngpu > FLEXPU_MAX_GPUS)
        return flexpu_error_field(err, FLEXPU_EINVAL, field, "", 0, "not a remote slice");
    int64_t mem[FLEXPU_MAX_GPUS];
    char gf[96];
    for (int i = 0; i < al->ngpu; i++) {
        int g = -1;
        for (int k = 0; k < inv->ngpu && g < 0; k++)
            if (strcmp(inv->gpus[k].uuid, al->gpus[i].uuid) == 0)
                g = k;
        snprintf(gf, sizeof(gf), "metadata.annotations[" FX_ANN_ALLOCATION "].gpus[%d].uuid", i);
        if (g < 0)
            return flexpu_error_field(err, FLEXPU_EINVAL, gf, al->gpus[i].uuid,
                                      strlen(al->gpus[i].uuid), "this node has no such GPU");
        if (inv->gpus[g].mig[0])
            return flexpu_error_field(err, FLEXPU_EINVAL, gf, al->gpus[i].uuid,
                                      strlen(al->gpus[i].uuid),
                                      "a MIG device is never served remotely in this cut");
        mem[i] = inv->gpus[g].mem_bytes;
    }
    int rc = fx_allocation_check(s, al, mem, err);
    if (rc)
        return rc;
    /* The UID names the server's slice (fx_remote_slice_key) and its
     * directories: a pod UID's letters, digits and dashes only. */
    size_t ul = uid ? strlen(uid) : 0;
    if (!uid || ul == 0 || ul > FX_REMOTE_UID_MAX || uid[0] == '-' ||
        strspn(uid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != ul)
        return flexpu_error_field(err, FLEXPU_EINVAL, "metadata.uid", uid ? uid : "", ul,
                                  "must be a pod UID (letters, digits and '-', at most 56)");
    if (port < 1 || port > 65535) {
        char v[16];
        snprintf(v, sizeof(v), "%d", port);
        return flexpu_error_field(err, FLEXPU_EINVAL, "port", v, strlen(v), "must be 1-65535");
    }
    /* One slice for all its GPUs, as the device plugin writes a local
     * pod's. */
    out->ngpu = al->ngpu;
    for (int i = 0; i < al->ngpu; i++)
        snprintf(out->gpu_uuid[i], sizeof(out->gpu_uuid[i]), "%s", al->gpus[i].uuid);
    fx_slice_set_shares(&out->slice, al);
    snprintf(out->slice.tenant, sizeof(out->slice.tenant), "%s", uid);
    fx_slice_set_cap(&out->slice, s->cores_limit);
    out->slice.priority = s->priority;
    out->port = port;
    out->max_clients = FX_REMOTE_MAX_CLIENTS_DEFAULT;
    out->max_module_mib = FX_REMOTE_MAX_MODULE_MIB_DEFAULT;
    return 0;
}

bool fx_remote_digits(const char *text, long long lo, long long hi, long long *out)
{
    if (!text || *text < '0' || *text > '9')
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int fx_remote_limit_parse(const char *flag, const char *text, int max, int *out,
                          struct flexpu_error *err)
{
    long long v;
    if (!fx_remote_digits(text, 1, max, &v)) {
        char why[48];
        snprintf(why, sizeof(why), "must be a number from 1 to %d", max);
        return flexpu_error_field(err, FLEXPU_EINVAL, flag, text ? text : "",
                                  text ? strlen(text) : 0, why);
    }
    *out = (int)v;
    return 0;
}

/* Appends "fmt..." to buf at *at as one string; NULL when it does not fit. */
static char *put(char *buf, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static char *put(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
    if (*at >= len)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *at, len - *at, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len - *at)
        return NULL;
    char *s = buf + *at;
    *at += (size_t)n + 1;
    return s;
}

int fx_remote_slice_key(const char *uid, char *out, size_t len)
{
    int n = snprintf(out, len, FX_REMOTE_KEY_PREFIX "%s", uid);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

size_t fx_remote_server_gpus(const struct fx_remote_server *sv, char *buf, size_t cap)
{
    size_t n = 0;
    if (cap)
        buf[0] = 0;
    for (int i = 0; i < sv->ngpu && i < FLEXPU_MAX_GPUS; i++)
        n += (size_t)snprintf(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, "%s%s",
                              i ? "," : "", sv->gpu_uuid[i]);
    return n;
}

int fx_remote_server_cmd(const struct fx_remote_server *sv, const char *bin,
                         const char *runtime_lib, const char *arb_dir, const char *ledger_dir,
                         const char *borrowed_dir, char *buf, size_t len, char **argv, size_t nargv, char **envp,
                         size_t nenv, struct flexpu_error *err)
{
    size_t at = 0, a = 0, e = 0;
    if (nargv < 14 || nenv < 11)
        return flexpu_error_set(err, FLEXPU_ERANGE, "remote server: argv or envp too small");
    char v[16];
    if (sv->max_clients < 1 || sv->max_clients > FX_REMOTE_MAX_CLIENTS_MAX) {
        snprintf(v, sizeof(v), "%d", sv->max_clients);
        return flexpu_error_field(err, FLEXPU_EINVAL, "--max-clients", v, strlen(v),
                                  "must be 1-4096");
    }
    if (sv->max_module_mib < 1 || sv->max_module_mib > FX_REMOTE_MAX_MODULE_MIB_MAX) {
        snprintf(v, sizeof(v), "%d", sv->max_module_mib);
        return flexpu_error_field(err, FLEXPU_EINVAL, "--max-module-mib", v, strlen(v),
                                  "must be 1-65536");
    }
    argv[a++] = put(buf, len, &at, "%s", bin);
    argv[a++] = put(buf, len, &at, "--listen");
    argv[a++] = put(buf, len, &at, "0.0.0.0:%d", sv->port);
    /* The token and the port file are descriptors (remote_spawn.h): the
     * server's user cannot open the files; the slice's name marks the
     * process as this slice's server for an agent that adopts it. */
    argv[a++] = put(buf, len, &at, "--token-fd");
    argv[a++] = put(buf, len, &at, "%d", FX_REMOTE_TOKEN_FD);
    argv[a++] = put(buf, len, &at, "--port-fd");
    argv[a++] = put(buf, len, &at, "%d", FX_REMOTE_PORT_FD);
    argv[a++] = put(buf, len, &at, "--slice");
    argv[a++] = put(buf, len, &at, "%s", sv->slice.tenant);
    /* What one slice's server may hold in host memory, as the agent was
     * told (docs/REMOTE.md, "The servers' host memory"). */
    argv[a++] = put(buf, len, &at, "--max-clients");
    argv[a++] = put(buf, len, &at, "%d", sv->max_clients);
    argv[a++] = put(buf, len, &at, "--max-module-mib");
    argv[a++] = put(buf, len, &at, "%d", sv->max_module_mib);
    argv[a] = NULL;
    envp[e++] = put(buf, len, &at, "LD_PRELOAD=%s", runtime_lib);
    /* Its GPUs, in the allocation's order: the client's devices 0..N-1. */
    char vis[FLEXPU_MAX_GPUS * FX_UUID_MAX];
    envp[e++] = fx_remote_server_gpus(sv, vis, sizeof(vis)) < sizeof(vis)
                    ? put(buf, len, &at, "CUDA_VISIBLE_DEVICES=%s", vis)
                    : NULL;
    envp[e++] = put(buf, len, &at, "FLEXPU_TENANT=%s", sv->slice.tenant);
    envp[e++] = put(buf, len, &at, "FLEXPU_COMPUTE_SHARE=%d", sv->slice.compute_share);
    envp[e++] = put(buf, len, &at, "FLEXPU_COMPUTE_CAP=%d", sv->slice.compute_cap);
    envp[e++] = put(buf, len, &at, "FLEXPU_PRIORITY=%s", fx_priority_name(sv->slice.priority));
    /* The agent's arbiter decides when it runs, beside the node's local
     * slices (runtime/arbagent.h); it writes only its own slice's ledger
     * and requests. */
    envp[e++] = put(buf, len, &at, "FLEXPU_ARBITER_DIR=%s", arb_dir);
    envp[e++] = put(buf, len, &at, "FLEXPU_LEDGER_DIR=%s", ledger_dir);
    /* An owner: the runtime reads its settings from this environment (the
     * server has no slice.conf), so without it the server's allocations
     * would never wait for a borrower of its GPU to be killed. */
    envp[e++] = put(buf, len, &at, "FLEXPU_BORROWED_DIR=%s", borrowed_dir);
    if (sv->slice.memory > 0)
        envp[e++] = put(buf, len, &at, "FLEXPU_MEMORY_LIMIT=%lld", (long long)sv->slice.memory);
    envp[e] = NULL;
    for (size_t i = 0; i < a; i++)
        if (!argv[i])
            return flexpu_error_set(err, FLEXPU_ERANGE, "remote server: command too long");
    for (size_t i = 0; i < e; i++)
        if (!envp[i])
            return flexpu_error_set(err, FLEXPU_ERANGE, "remote server: environment too long");
    return 0;
}

int fx_remote_token_new(const char *path, struct flexpu_error *err)
{
    unsigned char raw[32];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return flexpu_error_set(err, FLEXPU_EIO, "getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    char hex[2 * sizeof(raw) + 2];
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    hex[2 * sizeof(raw)] = '\n';
    hex[2 * sizeof(raw) + 1] = 0;
    int rc = fx_file_replace(path, hex, 0600, err);
    memset(raw, 0, sizeof(raw));
    memset(hex, 0, sizeof(hex));
    return rc;
}

int fx_remote_endpoint_check(const char *text, const char *field, struct flexpu_error *err)
{
    const char *why = NULL;
    size_t n = text ? strlen(text) : 0;
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!text || n == 0 || n > 300 || !colon || colon == text)
        why = "must be HOST:PORT";
    else {
        size_t hl = (size_t)(colon - text);
        const char *port = colon + 1;
        if (text[0] == '[') {
            /* [IPv6]: hex digits, ':' and '.' between the brackets. */
            if (hl < 3 || text[hl - 1] != ']' ||
                strspn(text + 1, "0123456789abcdefABCDEF:.") != hl - 2)
                why = "an IPv6 host is [hex digits and colons]";
        } else if (strspn(text, "abcdefghijklmnopqrstuvwxyz0123456789-.") != hl ||
                   text[0] == '-' || text[0] == '.' || text[hl - 1] == '-' ||
                   text[hl - 1] == '.' || hl > 253) {
            why = "the host must be a node name or an IPv4 address (lowercase letters, digits, "
                  "- and .)";
        }
        long p = 0;
        size_t pl = strspn(port, "0123456789");
        if (!why && (pl == 0 || pl > 5 || port[pl] != 0 || port[0] == '0'))
            why = "the port must be a number 1-65535";
        if (!why && ((p = strtol(port, NULL, 10)) < 1 || p > 65535))
            why = "the port must be a number 1-65535";
    }
    if (why)
        return flexpu_error_field(err, FLEXPU_EINVAL, field, text ? text : "", n, why);
    return 0;
}

int fx_remote_client_env(const char *endpoint, const char *lib_dir, const char *token,
                         char *buf, size_t len, char **envp, size_t nenv,
                         struct flexpu_error *err)
{
    int rc = fx_remote_endpoint_check(endpoint, "endpoint", err);
    if (rc)
        return rc;
    if (nenv < 4)
        return flexpu_error_set(err, FLEXPU_ERANGE, "remote client: envp too small");
    size_t at = 0;
    envp[0] = put(buf, len, &at, "FLEXPU_REMOTE_ADDR=%s", endpoint);
    envp[1] = put(buf, len, &at, "FLEXPU_REMOTE_TOKEN_FILE=%s", token);
    envp[2] = put(buf, len, &at, "LD_PRELOAD=%s/libcudart.so.12 %s/libcublas.so.12", lib_dir,
                  lib_dir);
    envp[3] = NULL;
    if (!envp[0] || !envp[1] || !envp[2])
        return flexpu_error_set(err, FLEXPU_ERANGE, "remote client: environment too long");
    return 0;
}
