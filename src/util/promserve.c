/* SPDX-License-Identifier: Apache-2.0 */
#include "util/promserve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

int fx_prom_parse_port(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || !*s || v < 0 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

void fx_prom_label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

void fx_prom_help(FILE *f, const char *name, const char *type, const char *text)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

struct fx_promserve {
    struct MHD_Daemon *d;
    fx_prom_render_fn render;
    fx_prom_health_fn health;
    void *ctx;
};

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_len, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_len;
    (void)con_cls;
    struct fx_promserve *s = cls;
    unsigned code = MHD_HTTP_OK;
    char *body;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        body = strdup("only GET\n");
    } else if (strcmp(url, "/metrics") == 0) {
        body = s->render(s->ctx);
        if (!body) {
            code = MHD_HTTP_INTERNAL_SERVER_ERROR;
            body = strdup("out of memory\n");
        }
    } else if (strcmp(url, "/healthz") == 0) {
        char why[256] = "";
        if (s->health && s->health(s->ctx, why, sizeof(why))) {
            code = MHD_HTTP_SERVICE_UNAVAILABLE;
            size_t n = strlen(why);
            body = malloc(n + 2);
            if (body)
                memcpy(body, why, n), body[n] = '\n', body[n + 1] = 0;
        } else {
            body = strdup("ok\n");
        }
    } else {
        code = MHD_HTTP_NOT_FOUND;
        body = strdup("not found: try /metrics or /healthz\n");
    }
    if (!body)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

struct fx_promserve *fx_promserve_start(const char *addr, int port, fx_prom_render_fn render,
                                        fx_prom_health_fn health, void *ctx,
                                        struct flexpu_error *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        flexpu_error_set(err, FLEXPU_EINVAL,
                         "metrics address '%s:%d' is not an IPv4 address and port", addr, port);
        return NULL;
    }
    struct fx_promserve *s = calloc(1, sizeof(*s));
    if (!s) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    s->render = render;
    s->health = health;
    s->ctx = ctx;
    /* A thread per connection: a slow scrape must not hold up /healthz, or
     * the liveness probe restarts a working daemon. The connection limit
     * bounds the threads; the timeout drops idle or stalled clients. */
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, serve, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, 64u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!s->d) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot serve metrics on %s:%d (port in use?)", addr,
                         port);
        free(s);
        return NULL;
    }
    return s;
}

void fx_promserve_stop(struct fx_promserve *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    free(s);
}
