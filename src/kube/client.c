/* SPDX-License-Identifier: Apache-2.0 */
/* Requests to the API server over libcurl; one easy handle per client, so the
 * connection (and its TLS session) is reused across requests. */
#include "kube/http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "util/alloc.h"
#include "util/clock.h"

#define BODY_MAX     ((size_t)256 << 20) /* one list page or object; far above any real one */
#define TOKEN_TTL_NS (60LL * 1000000000LL)

struct kube_client {
    CURL *curl;
    struct kube_config cfg;
    char *user_agent;
    char auth[8192]; /* "Authorization: Bearer ..." or empty */
    int64_t token_read_ns;
    int object_ms, list_ms; /* request bounds (kube.h) */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static unsigned char *dup_blob(const unsigned char *p, size_t n)
{
    if (!p)
        return NULL;
    unsigned char *d = fx_malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

/* Service-account tokens rotate; the file is read again at most once a
 * minute. A read failure keeps the last token. */
static void refresh_token(struct kube_client *c)
{
    int64_t now = (int64_t)fx_mono_ns();
    if (c->cfg.token) {
        if (!c->auth[0])
            snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", c->cfg.token);
        return;
    }
    if (!c->cfg.token_file || (c->auth[0] && now - c->token_read_ns < TOKEN_TTL_NS))
        return;
    FILE *f = fopen(c->cfg.token_file, "r");
    if (!f)
        return;
    char tok[8000];
    size_t n = fread(tok, 1, sizeof(tok) - 1, f);
    fclose(f);
    while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        n--;
    tok[n] = 0;
    if (n > 0) {
        snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", tok);
        c->token_read_ns = now;
    }
}

struct kube_client *kube_client_new(const struct kube_config *cfg, const char *user_agent,
                                    struct flexpu_error *err)
{
    pthread_once(&curl_once, curl_init_once);
    struct kube_client *c = fx_calloc(1, sizeof(*c));
    if (!c) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory creating a client");
        return NULL;
    }
    c->curl = curl_easy_init();
    c->cfg.server = fx_strdup(cfg->server);
    c->cfg.token = cfg->token ? fx_strdup(cfg->token) : NULL;
    c->cfg.token_file = cfg->token_file ? fx_strdup(cfg->token_file) : NULL;
    c->cfg.namespace = fx_strdup(cfg->namespace ? cfg->namespace : "default");
    c->cfg.ca = dup_blob(cfg->ca, cfg->ca_len);
    c->cfg.ca_len = cfg->ca_len;
    c->cfg.cert = dup_blob(cfg->cert, cfg->cert_len);
    c->cfg.cert_len = cfg->cert_len;
    c->cfg.key = dup_blob(cfg->key, cfg->key_len);
    c->cfg.key_len = cfg->key_len;
    c->cfg.insecure = cfg->insecure;
    c->user_agent = fx_strdup(user_agent ? user_agent : "flexpu");
    c->object_ms = KUBE_TIMEOUT_OBJECT_MS;
    c->list_ms = KUBE_TIMEOUT_LIST_MS;
    if (!c->curl || !c->cfg.server || !c->cfg.namespace || !c->user_agent ||
        (cfg->token && !c->cfg.token) || (cfg->token_file && !c->cfg.token_file) ||
        (cfg->ca && !c->cfg.ca) || (cfg->cert && !c->cfg.cert) || (cfg->key && !c->cfg.key)) {
        kube_client_free(c);
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory creating a client");
        return NULL;
    }
    return c;
}

void kube_client_free(struct kube_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    kube_config_free(&c->cfg);
    fx_free(c->user_agent);
    fx_free(c);
}

void kube_client_set_timeouts(struct kube_client *c, int object_ms, int list_ms)
{
    if (object_ms > 0)
        c->object_ms = object_ms;
    if (list_ms > 0)
        c->list_ms = list_ms;
}

int kube_client_object_timeout_ms(const struct kube_client *c)
{
    return c->object_ms;
}

/* Options every request shares: TLS material, identity, timeouts. */
static struct curl_slist *prepare(struct kube_client *c, const char *method, const char *path,
                                  const char *ctype, char *url, size_t urllen)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    snprintf(url, urllen, "%s%s", c->cfg.server, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    /* Connecting is part of each request's bound; this only caps it for a
     * watch, which has none. */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (c->cfg.ca) {
        struct curl_blob b = {c->cfg.ca, c->cfg.ca_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
    }
    if (c->cfg.cert) {
        struct curl_blob b = {c->cfg.cert, c->cfg.cert_len, CURL_BLOB_NOCOPY};
        struct curl_blob k = {c->cfg.key, c->cfg.key_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &b);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &k);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->cfg.insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    refresh_token(c);
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/json");
    if (c->auth[0])
        hdr = curl_slist_append(hdr, c->auth);
    if (ctype) {
        char ct[128];
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        hdr = curl_slist_append(hdr, ct);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    return hdr;
}

struct buf {
    char *p;
    size_t len, cap;
    int over;
};

int kube_buf_append(char **p, size_t *plen, size_t *cap, size_t first, const char *data,
                    size_t len)
{
    if (*plen + len + 1 > *cap) {
        size_t c = *cap ? *cap : first;
        while (c < *plen + len + 1)
            c *= 2;
        char *np = fx_realloc(*p, c);
        if (!np)
            return -1;
        *p = np;
        *cap = c;
    }
    memcpy(*p + *plen, data, len);
    *plen += len;
    (*p)[*plen] = 0;
    return 0;
}

static size_t buf_write(char *data, size_t size, size_t n, void *ctx)
{
    struct buf *b = ctx;
    size_t len = size * n;
    if (b->len + len + 1 > BODY_MAX) {
        b->over = 1;
        return 0;
    }
    return kube_buf_append(&b->p, &b->len, &b->cap, 16384, data, len) ? 0 : len;
}

int kube_status_error(long status, const char *method, const char *path, const char *body,
                      size_t len, struct flexpu_error *err)
{
    int code = status == 404   ? FLEXPU_ENOENT
               : status == 409 ? FLEXPU_EEXIST
               : (status >= 400 && status < 500 && status != 429) ? FLEXPU_EINVAL
                                                                  : FLEXPU_EIO;
    const char *msg = NULL;
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    if (j)
        msg = json_string_value(json_object_get(j, "message"));
    char shown[200];
    if (!msg && body && len) {
        snprintf(shown, sizeof(shown), "%.*s", (int)(len < 180 ? len : 180), body);
        msg = shown;
    }
    flexpu_error_set(err, code, "%s %s: HTTP %ld: %s", method, path, status,
                     msg ? msg : "(no body)");
    json_decref(j);
    return code;
}

static int request(struct kube_client *c, const char *method, const char *path, json_t *body,
                   const char *ctype, int timeout_ms, bool error_body, long *status,
                   json_t **out, struct flexpu_error *err);

int kube_request(struct kube_client *c, const char *method, const char *path, json_t *body,
                 const char *ctype, long *status, json_t **out, struct flexpu_error *err)
{
    return request(c, method, path, body, ctype, c->object_ms, false, status, out, err);
}

int kube_request_status(struct kube_client *c, const char *method, const char *path,
                        json_t *body, const char *ctype, long *status, json_t **out,
                        struct flexpu_error *err)
{
    return request(c, method, path, body, ctype, c->object_ms, true, status, out, err);
}

int kube_request_list(struct kube_client *c, const char *path, long *status, json_t **out,
                      struct flexpu_error *err)
{
    return request(c, "GET", path, NULL, NULL, c->list_ms, false, status, out, err);
}

static int request(struct kube_client *c, const char *method, const char *path, json_t *body,
                   const char *ctype, int timeout_ms, bool error_body, long *status,
                   json_t **out, struct flexpu_error *err)
{
    char url[4096];
    char *text = NULL;
    if (out)
        *out = NULL;
    *status = 0;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text)
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory encoding a request");
    }
    struct curl_slist *hdr =
        prepare(c, method, path, body ? (ctype ? ctype : "application/json") : NULL, url,
                sizeof(url));
    struct buf b = {0};
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    if (text) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    }
    CURLcode cc = curl_easy_perform(c->curl);
    curl_slist_free_all(hdr);
    free(text); /* jansson allocated it */
    int rc = 0;
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = flexpu_error_set(err, FLEXPU_EIO, "%s %s: no answer within %d ms", method, path,
                              timeout_ms);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = flexpu_error_set(err, b.over ? FLEXPU_ERANGE : FLEXPU_EIO, "%s %s: %s", method, path,
                              b.over ? "response larger than 256 MiB" : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    if (*status < 200 || *status > 299) {
        rc = kube_status_error(*status, method, path, b.p, b.len, err);
        if (error_body && out && b.len)
            *out = json_loadb(b.p, b.len, 0, NULL); /* NULL when not JSON */
        goto out;
    }
    if (out && b.len) {
        json_error_t je;
        *out = json_loadb(b.p, b.len, 0, &je);
        if (!*out)
            rc = flexpu_error_set(err, FLEXPU_EPARSE, "%s %s: response is not JSON: %s", method,
                                  path, je.text);
    }
out:
    fx_free(b.p);
    return rc;
}

struct stream_ctx {
    kube_sink sink;
    void *ctx;
    atomic_int *stop;
    struct buf errbody; /* a non-2xx answer is kept for the message */
    int ok_status;      /* decided at the first byte */
    CURL *curl;
    int sink_failed;
};

static size_t stream_write(char *data, size_t size, size_t n, void *p)
{
    struct stream_ctx *s = p;
    size_t len = size * n;
    if (!s->ok_status) {
        long st = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &st);
        s->ok_status = (st >= 200 && st <= 299) ? 1 : -1;
    }
    if (s->ok_status < 0)
        return buf_write(data, size, n, &s->errbody);
    if (s->sink(data, len, s->ctx)) {
        s->sink_failed = 1;
        return 0;
    }
    return len;
}

static int stream_progress(void *p, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct stream_ctx *s = p;
    return s->stop && atomic_load(s->stop);
}

int kube_stream_get(struct kube_client *c, const char *path, kube_sink sink, void *ctx,
                    atomic_int *stop, long *status, struct flexpu_error *err)
{
    char url[4096];
    struct curl_slist *hdr = prepare(c, "GET", path, NULL, url, sizeof(url));
    struct stream_ctx s = {.sink = sink, .ctx = ctx, .stop = stop, .curl = c->curl};
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, stream_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
    /* A watch that goes silent for longer than the server's own timeout plus
     * bookmark interval is dead (a half-open connection). */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 600L);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    *status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    int rc = 0;
    if (s.ok_status < 0 || (cc == CURLE_OK && (*status < 200 || *status > 299)))
        rc = kube_status_error(*status, "GET", path, s.errbody.p, s.errbody.len, err);
    else if (stop && *stop)
        rc = 0;
    else if (s.sink_failed)
        rc = err && err->code ? err->code
                              : flexpu_error_set(err, FLEXPU_EPARSE, "GET %s: bad stream", path);
    else if (cc != CURLE_OK)
        rc = flexpu_error_set(err, FLEXPU_EIO, "GET %s: %s", path, curl_easy_strerror(cc));
    fx_free(s.errbody.p);
    return rc;
}

char *kube_escape(const char *s, char *buf, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < len; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            buf[o++] = (char)ch;
        } else {
            buf[o++] = '%';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        }
    }
    buf[o] = 0;
    return buf;
}

json_t *kube_get(json_t *obj, const char *dotted)
{
    char key[128];
    const char *p = dotted;
    while (obj && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, p, n);
        key[n] = 0;
        obj = json_object_get(obj, key);
        p += n + (dot ? 1 : 0);
    }
    return obj;
}

const char *kube_str(json_t *obj, const char *dotted)
{
    return json_string_value(kube_get(obj, dotted));
}

const char *kube_annotation(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(kube_get(obj, "metadata.annotations"), key));
}

/* "YYYY-MM-DDTHH:MM:SS" of unix second s, in UTC. */
static void time_base(time_t s, char *base, size_t len)
{
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(base, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

void kube_time_now(char *buf, size_t len, bool micro)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char base[32];
    time_base(ts.tv_sec, base, sizeof(base));
    if (micro)
        snprintf(buf, len, "%s.%06ldZ", base, ts.tv_nsec / 1000);
    else
        snprintf(buf, len, "%sZ", base);
}

void kube_time_of(int64_t s, char *buf, size_t len)
{
    char base[32];
    time_base((time_t)s, base, sizeof(base));
    snprintf(buf, len, "%sZ", base);
}
