/* SPDX-License-Identifier: Apache-2.0 */
/* List + watch: a paged list, then a watch from its resourceVersion that is
 * resumed after it ends and relisted after 410 Gone. */
#include "kube/http.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"

#define RV_MAX 128

const char *kube_event_name(enum kube_event ev)
{
    static const char *const names[] = {"SYNC_BEGIN", "ADDED", "MODIFIED", "DELETED", "SYNC_END"};
    return (unsigned)ev < sizeof(names) / sizeof(names[0]) ? names[ev] : "?";
}

/* ---- the line splitter ---- */

struct kube_stream {
    char *buf;
    size_t len, cap, max_line;
    kube_stream_cb cb;
    void *ctx;
};

struct kube_stream *kube_stream_new(size_t max_line, kube_stream_cb cb, void *ctx)
{
    struct kube_stream *s = fx_calloc(1, sizeof(*s));
    if (s) {
        s->max_line = max_line;
        s->cb = cb;
        s->ctx = ctx;
    }
    return s;
}

void kube_stream_free(struct kube_stream *s)
{
    if (s) {
        fx_free(s->buf);
        fx_free(s);
    }
}

static int stream_line(struct kube_stream *s, const char *line, size_t n, struct flexpu_error *err)
{
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    json_error_t je;
    json_t *ev = json_loadb(line, n, 0, &je);
    if (!ev)
        return flexpu_error_field(err, FLEXPU_EPARSE, "watch event", line, n, je.text);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    int rc;
    if (!type || !json_is_object(obj))
        rc = flexpu_error_field(err, FLEXPU_EPARSE, "watch event", line, n,
                                "needs a string 'type' and an object 'object'");
    else
        rc = s->cb(type, obj, s->ctx);
    json_decref(ev);
    return rc;
}

int kube_stream_feed(struct kube_stream *s, const char *data, size_t len, struct flexpu_error *err)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (s->len + take > s->max_line)
            return flexpu_error_set(err, FLEXPU_ERANGE, "watch event longer than %zu bytes",
                                    s->max_line);
        /* keep the partial line */
        if ((!nl || s->len) && kube_buf_append(&s->buf, &s->len, &s->cap, 65536, data, take))
            return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory in a watch");
        if (!nl)
            return 0;
        int rc = s->len ? stream_line(s, s->buf, s->len, err) : stream_line(s, data, take, err);
        s->len = 0;
        if (rc)
            return rc;
        data += take + 1;
        len -= take + 1;
    }
    return 0;
}

/* ---- the loop ---- */

struct lw {
    kube_watch_cb cb;
    void *ctx;
    char rv[RV_MAX];
    int gone;     /* the server said 410: relist */
    int cb_rc;    /* the callback asked to stop */
    struct kube_stream *stream;
    struct flexpu_error *err;
};

static void set_rv(struct lw *w, json_t *obj)
{
    const char *rv = kube_str(obj, "metadata.resourceVersion");
    if (rv && strlen(rv) < RV_MAX)
        snprintf(w->rv, sizeof(w->rv), "%s", rv);
}

static int on_event(const char *type, json_t *obj, void *p)
{
    struct lw *w = p;
    enum kube_event ev;
    if (strcmp(type, "BOOKMARK") == 0) {
        set_rv(w, obj);
        return 0;
    }
    if (strcmp(type, "ERROR") == 0) {
        /* 410 (expired resourceVersion) and anything else the server reports
         * mid-stream are both healed by a fresh list. */
        w->gone = 1;
        return 1;
    }
    if (strcmp(type, "ADDED") == 0)
        ev = KUBE_ADDED;
    else if (strcmp(type, "MODIFIED") == 0)
        ev = KUBE_MODIFIED;
    else if (strcmp(type, "DELETED") == 0)
        ev = KUBE_DELETED;
    else
        return 0; /* an event type from the future: its resourceVersion is not ours to trust */
    set_rv(w, obj);
    int rc = w->cb(ev, obj, w->ctx);
    if (rc)
        w->cb_rc = rc;
    return rc;
}

static int sink(const char *buf, size_t len, void *p)
{
    struct lw *w = p;
    return kube_stream_feed(w->stream, buf, len, w->err) ? 1 : 0;
}

static void append_selectors(char *q, size_t len, const struct kube_watch_opts *o)
{
    char esc[1024];
    size_t n = strlen(q);
    if (o->field_selector && *o->field_selector)
        n += (size_t)snprintf(q + n, len - n, "&fieldSelector=%s",
                              kube_escape(o->field_selector, esc, sizeof(esc)));
    if (n < len && o->label_selector && *o->label_selector)
        snprintf(q + n, len - n, "&labelSelector=%s",
                 kube_escape(o->label_selector, esc, sizeof(esc)));
}

/* One full paged list, delivered as SYNC_BEGIN, ADDED..., SYNC_END. */
static int list_all(struct kube_client *c, const struct kube_watch_opts *o, struct lw *w,
                    struct flexpu_error *err)
{
    char path[4096], cont[2048] = "", esc[2048];
    int rc = w->cb(KUBE_SYNC_BEGIN, NULL, w->ctx);
    if (rc)
        return w->cb_rc = rc;
    for (;;) {
        snprintf(path, sizeof(path), "%s?limit=%d%s%s", o->path, o->page_size ? o->page_size : 500,
                 cont[0] ? "&continue=" : "", cont[0] ? kube_escape(cont, esc, sizeof(esc)) : "");
        append_selectors(path, sizeof(path), o);
        long status;
        json_t *page;
        rc = kube_request_list(c, path, &status, &page, err);
        if (o->list_status)
            *o->list_status = status;
        if (rc)
            return rc;
        json_t *items = json_object_get(page, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            rc = w->cb(KUBE_ADDED, it, w->ctx);
            if (rc) {
                json_decref(page);
                return w->cb_rc = rc;
            }
        }
        set_rv(w, page);
        const char *next = kube_str(page, "metadata.continue");
        snprintf(cont, sizeof(cont), "%s", next && strlen(next) < sizeof(cont) ? next : "");
        json_decref(page);
        if (!cont[0])
            break;
    }
    rc = w->cb(KUBE_SYNC_END, NULL, w->ctx);
    return rc ? (w->cb_rc = rc) : 0;
}

int kube_list(struct kube_client *c, const struct kube_watch_opts *o, kube_watch_cb cb, void *ctx,
              struct flexpu_error *err)
{
    struct lw w = {.cb = cb, .ctx = ctx, .err = err};
    int rc = list_all(c, o, &w, err);
    return w.cb_rc ? w.cb_rc : rc;
}

static void sleep_ms(int ms, atomic_int *stop)
{
    for (int t = 0; t < ms && !(stop && atomic_load(stop)); t += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int kube_list_watch(struct kube_client *c, const struct kube_watch_opts *o, kube_watch_cb cb,
                    void *ctx, struct flexpu_error *err)
{
    struct lw w = {.cb = cb, .ctx = ctx, .err = err};
    int need_list = 1, backoff = 200, rc = 0;
    while (!(o->stop && atomic_load(o->stop))) {
        if (need_list) {
            rc = list_all(c, o, &w, err);
            if (w.cb_rc)
                break;
            if (rc) {
                sleep_ms(backoff, o->stop);
                backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
                continue;
            }
            need_list = 0;
        }
        char path[4096], esc[RV_MAX * 3];
        snprintf(path, sizeof(path),
                 "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d&resourceVersion=%s",
                 o->path, o->timeout_s ? o->timeout_s : 300, kube_escape(w.rv, esc, sizeof(esc)));
        append_selectors(path, sizeof(path), o);
        long status;
        w.gone = 0;
        /* A fresh splitter per connection: no partial line carries over. */
        kube_stream_free(w.stream);
        w.stream = kube_stream_new(64u << 20, on_event, &w);
        if (!w.stream) {
            rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory in a watch");
            break;
        }
        rc = kube_stream_get(c, path, sink, &w, o->stop, &status, err);
        if (w.cb_rc)
            break;
        if (w.gone || status == 410) {
            need_list = 1;
            backoff = 200;
            continue;
        }
        if (rc) {
            /* A broken connection resumes from the last resourceVersion; a
             * malformed stream cannot be trusted and is relisted. */
            if (rc != FLEXPU_EIO)
                need_list = 1;
            sleep_ms(backoff, o->stop);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            continue;
        }
        backoff = 200; /* a clean end (the server's timeout): resume at once */
    }
    kube_stream_free(w.stream);
    if (w.cb_rc)
        return w.cb_rc;
    return (o->stop && atomic_load(o->stop)) ? 0 : rc;
}
