/* SPDX-License-Identifier: Apache-2.0 */
/* A small Kubernetes API client: configuration (kubeconfig or in-cluster),
 * JSON requests, list + watch with resourceVersion, bookmarks and relist on
 * 410, and leader election on coordination.k8s.io Leases.
 *
 * Built on libcurl (HTTP/1.1 and HTTP/2, TLS with client certificates held in
 * memory) and jansson. A kube_client owns one connection and is used by one
 * thread at a time; a program makes one per thread (the watches each hold a
 * connection open). */
#ifndef FX_KUBE_H
#define FX_KUBE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "flexpu/error.h"

/* Where the API server is and how to authenticate. Blobs are PEM. */
struct kube_config {
    char *server;      /* https://host:port, no trailing slash */
    char *token;       /* bearer token, or NULL */
    char *token_file;  /* re-read on every connection (service-account tokens rotate) */
    unsigned char *ca; /* NULL: system trust store */
    size_t ca_len;
    unsigned char *cert, *key; /* client certificate and key, or NULL */
    size_t cert_len, key_len;
    bool insecure;   /* insecure-skip-tls-verify */
    char *namespace; /* the context's namespace, or the pod's in-cluster; "default" */
};

/* Loads a configuration: `path` if given, else $KUBECONFIG (first entry),
 * else in-cluster (KUBERNETES_SERVICE_HOST and the mounted service-account),
 * else ~/.kube/config. `context` NULL means current-context. Errors name the
 * file and the field. */
int kube_config_load(const char *path, const char *context, struct kube_config *out,
                     struct flexpu_error *err);

/* Parses kubeconfig YAML text; relative file paths resolve against `dir`. */
int kube_config_parse(const char *text, size_t len, const char *dir, const char *context,
                      struct kube_config *out, struct flexpu_error *err);

/* The in-cluster configuration from `root` (normally
 * /var/run/secrets/kubernetes.io/serviceaccount) and the environment. */
int kube_config_in_cluster(const char *root, struct kube_config *out, struct flexpu_error *err);

void kube_config_free(struct kube_config *c);

struct kube_client;

/* A client for one thread. The configuration is copied. */
struct kube_client *kube_client_new(const struct kube_config *cfg, const char *user_agent,
                                    struct flexpu_error *err);
void kube_client_free(struct kube_client *c);

/* How long a whole request (connecting included) may take, by kind:
 *  - one object (a GET of it, POST, PUT, PATCH, DELETE, a Binding, the
 *    Lease): a few seconds. A leader binds only while its lease stays valid
 *    for this long, and a write that runs out has an unknown outcome, which
 *    its caller must treat as such;
 *  - one page of a list: hundreds of objects from a server under load;
 *  - a watch is open for minutes by design: the server's timeoutSeconds
 *    ends it, and a stream silent for 10 minutes is taken as dead. */
#define KUBE_TIMEOUT_OBJECT_MS 5000
#define KUBE_TIMEOUT_LIST_MS   60000

/* Changes this client's bounds (milliseconds; 0 keeps the current one). */
void kube_client_set_timeouts(struct kube_client *c, int object_ms, int list_ms);
int kube_client_object_timeout_ms(const struct kube_client *c);

/* Sends METHOD to PATH (which starts with /api or /apis, with its query)
 * with an optional JSON body (borrowed) of content type `ctype` (NULL:
 * application/json). *status receives the HTTP status (0 when no response
 * came). When the response is JSON and `out` is not NULL, *out receives it
 * (the caller decrefs). Returns 0 on a 2xx status; otherwise an error whose
 * message holds the status and the server's Status message:
 * FLEXPU_ENOENT (404), FLEXPU_EEXIST (409), FLEXPU_EIO (transport, 5xx...),
 * FLEXPU_EINVAL (other 4xx). Bounded by the object timeout: past it the
 * error is FLEXPU_EIO, and a write may or may not have happened. */
int kube_request(struct kube_client *c, const char *method, const char *path, json_t *body,
                 const char *ctype, long *status, json_t **out, struct flexpu_error *err);
/* ctype of a PATCH: a JSON merge patch (null deletes a key), or the
 * strategic merge patch of built-in kinds (lists merged by their keys). */
#define KUBE_MERGE_PATCH "application/merge-patch+json"
#define KUBE_STRATEGIC_PATCH "application/strategic-merge-patch+json"

/* A GET of one page of a list (PATH with its limit/continue query), bounded
 * by the list timeout; otherwise as kube_request. */
int kube_request_list(struct kube_client *c, const char *path, long *status, json_t **out,
                      struct flexpu_error *err);

/* Percent-encodes s for a URL query value into buf; returns buf. */
char *kube_escape(const char *s, char *buf, size_t len);

/* ---- list + watch ---- */

enum kube_event {
    KUBE_SYNC_BEGIN, /* a full list starts: objects not seen again before END are gone */
    KUBE_ADDED,
    KUBE_MODIFIED,
    KUBE_DELETED,
    KUBE_SYNC_END,
};
const char *kube_event_name(enum kube_event ev);

/* Receives each event; obj is borrowed (NULL for SYNC_*). A non-zero return
 * stops the loop and is returned by kube_list_watch. */
typedef int (*kube_watch_cb)(enum kube_event ev, json_t *obj, void *ctx);

struct kube_watch_opts {
    const char *path;           /* collection, e.g. /api/v1/pods */
    const char *field_selector; /* may be NULL */
    const char *label_selector; /* may be NULL */
    int page_size;              /* list page (limit); 0: 500 */
    int timeout_s;              /* server-side watch timeout; 0: 300 */
    atomic_int *stop;           /* polled; the loop returns 0 when it becomes non-zero */
    /* If not NULL, the HTTP status of the last list attempt (0: no answer),
     * so a caller can tell a collection that does not exist (404: a CRD not
     * installed) or may not be read (403) from one still loading; the loop
     * retries either way. */
    volatile long *list_status;
};

/* Lists (page by page, so memory stays bounded by one page) and then watches
 * from the list's resourceVersion, with bookmarks; reconnects from the last
 * resourceVersion when a watch ends, and relists (SYNC_BEGIN..SYNC_END) on
 * 410 Gone or a broken stream it cannot resume. Transport errors back off
 * (0.2 s doubling to 5 s) and retry. Returns when *stop is set or the
 * callback returns non-zero. */
int kube_list_watch(struct kube_client *c, const struct kube_watch_opts *o, kube_watch_cb cb,
                    void *ctx, struct flexpu_error *err);

/* One full paged list of o's collection and selectors (o->path,
 * field_selector, label_selector, page_size, list_status), delivered as
 * SYNC_BEGIN, ADDED..., SYNC_END, without a watch after it; no retry: a
 * failed page is the error (the objects of the pages before it were
 * delivered, SYNC_END was not). */
int kube_list(struct kube_client *c, const struct kube_watch_opts *o, kube_watch_cb cb, void *ctx,
              struct flexpu_error *err);

/* Splits a watch stream into lines and parses each event; exposed for tests.
 * Feed bytes with kube_stream_feed; each complete line calls back with the
 * parsed type and object. A malformed line or one over the limit is an error
 * naming what was wrong. */
struct kube_stream;
typedef int (*kube_stream_cb)(const char *type, json_t *obj, void *ctx);
struct kube_stream *kube_stream_new(size_t max_line, kube_stream_cb cb, void *ctx);
int kube_stream_feed(struct kube_stream *s, const char *buf, size_t len, struct flexpu_error *err);
void kube_stream_free(struct kube_stream *s);

/* ---- leader election (coordination.k8s.io/v1 Lease) ---- */

struct kube_lease {
    const char *namespace, *name, *identity;
    int duration_s; /* leaseDurationSeconds; 0: 15 */
    /* Observed state: another holder's lease counts as expired only after it
     * has stayed unchanged for duration_s on our own monotonic clock, so the
     * holders' clocks never need to agree. */
    char observed[256];
    int64_t observed_at_ns;
    int64_t renewed_at_ns; /* our last successful write */
    bool leader;
};

/* One election round: acquires or renews the lease (optimistic concurrency
 * on resourceVersion), sets l->leader. now_ns is a monotonic time. */
int kube_lease_step(struct kube_client *c, struct kube_lease *l, int64_t now_ns,
                    struct flexpu_error *err);

/* Whether we lead and the lease stays ours, by our own monotonic clock,
 * until now_ns + for_ns: the last renewal (timed from before its request
 * was sent) is younger than the renew deadline, two thirds of the
 * duration, by that margin. The last third is the slack for clocks running
 * at different rates and the server applying a request late; a candidate
 * takes over only after a whole duration without renewal. Checked before
 * each write only a leader may make (a bind), with for_ns its timeout. */
bool kube_lease_valid_for(const struct kube_lease *l, int64_t now_ns, int64_t for_ns);

/* The last monotonic instant at which a request bounded by for_ns may still
 * go out (kube_lease_valid_for holds strictly before it): a write decided
 * now but sent later by another thread is checked against it when sent. */
int64_t kube_lease_send_by(const struct kube_lease *l, int64_t for_ns);

/* Gives the lease up (holder cleared) if we hold it, so a successor need not
 * wait for it to expire. */
int kube_lease_release(struct kube_client *c, struct kube_lease *l, struct flexpu_error *err);

/* ---- preemption and queues: the scheduler's writes (evict.c) ---- */

/* The API group and version of flexpu's Queue (deploy/helm/flexpu/crds/). */
#define KUBE_QUEUES_PATH "/apis/flexpu.io/v1alpha1/queues"

/* Evicts pod NS/NAME through the Eviction API (policy/v1), so the API server
 * checks the pod's PodDisruptionBudgets; `uid` (may be NULL) is a
 * precondition, so a pod recreated under the same name is never evicted in
 * its place. Returns 0 (the pod is being deleted: its grace period runs),
 * FLEXPU_EBUSY when a PodDisruptionBudget refuses it now (HTTP 429 with the
 * DisruptionBudget cause: choose another victim), FLEXPU_ENOENT when the pod
 * is gone (404) or another pod holds the name (409: the UID differs),
 * FLEXPU_EIO for transport errors, 5xx and a 429 without that cause (the
 * server throttling: try again later), FLEXPU_EINVAL for other 4xx (403:
 * RBAC). The message names the pod and gives the server's reason (for a
 * budget, which one and why). */
int kube_evict(struct kube_client *c, const char *ns, const char *name, const char *uid,
               struct flexpu_error *err);

/* Deletes pod NS/NAME with its termination grace period (no
 * gracePeriodSeconds: the pod's own), `uid` (may be NULL) as a
 * precondition as in kube_evict, after marking it with the condition
 * DisruptionTarget (reason PreemptionByScheduler, a strategic merge patch of
 * pods/NAME/status; its failure does not stop the delete), as an eviction
 * would have, its message `cond_msg` (why the pod goes). No
 * PodDisruptionBudget is consulted: for a borrower whose eviction a budget
 * refused (docs/KUBERNETES.md, "A PodDisruptionBudget does not keep a
 * borrower"). Returns 0 (being deleted), FLEXPU_ENOENT when the pod is
 * gone (404) or another pod holds the name (409 on the UID
 * precondition), otherwise as kube_request (403: FLEXPU_EINVAL, the
 * server's message naming the verb RBAC lacks). */
int kube_delete_pod(struct kube_client *c, const char *ns, const char *name, const char *uid,
                    const char *cond_msg, struct flexpu_error *err);

/* Sets status.nominatedNodeName of pending pod NS/NAME to `node`, or clears
 * it (node NULL), by a merge patch of pods/NAME/status: the node the pod
 * will go to once its victims are gone, which kube-scheduler and flexpu
 * both keep free for it. `uid` (may be NULL) guards the patch as in
 * kube_evict: FLEXPU_ENOENT when the pod is gone or another pod holds the
 * name (the API server answers 422 on metadata.uid). A bound pod cannot be
 * nominated: FLEXPU_EINVAL with the server's message; clearing is allowed on
 * one (the server refuses only a new node name there), so a clear that
 * races a bind succeeds. */
int kube_nominate(struct kube_client *c, const char *ns, const char *name, const char *uid,
                  const char *node, struct flexpu_error *err);

/* Sets the PodScheduled condition of pending pod NS/NAME to False with
 * `reason` (Unschedulable, SchedulerError...) and `message`, as
 * kube-scheduler does when it cannot place a pod: a strategic merge patch
 * of pods/NAME/status (conditions merge by type) with lastProbeTime null
 * and lastTransitionTime `since_s` (unix seconds: when the pod's condition
 * turned False, kept as the status stays), or now when since_s is 0. The
 * API server sets PodScheduled=True itself when the pod is bound. `uid`
 * guards it as in kube_nominate: FLEXPU_ENOENT when the pod is gone or
 * another pod holds the name; otherwise as kube_request (403: RBAC lacks
 * patch on pods/status). */
int kube_pod_unscheduled(struct kube_client *c, const char *ns, const char *name,
                         const char *uid, const char *reason, const char *message,
                         int64_t since_s, struct flexpu_error *err);

/* Sets label KEY of pod NS/NAME to VALUE (NULL: removes it) by a merge
 * patch carrying `uid` as a precondition, so a pod recreated under the
 * same name is never labelled in its place. 0, FLEXPU_ENOENT when the pod
 * is gone (404) or another pod holds the name (422 on metadata.uid),
 * otherwise as kube_request (a timeout: FLEXPU_EIO, the label may or may
 * not be written). */
int kube_label_pod(struct kube_client *c, const char *ns, const char *name, const char *uid,
                   const char *key, const char *value, struct flexpu_error *err);

/* Merge-patches the status of Queue NAME (queues/NAME/status) with `patch`
 * (borrowed; {"status": {...}}, as the queue status builder makes it).
 * FLEXPU_ENOENT when the queue is gone; otherwise as kube_request. */
int kube_queue_patch_status(struct kube_client *c, const char *name, json_t *patch,
                            struct flexpu_error *err);

/* ---- events users read (events.c) ---- */

/* A core/v1 Event about a pod. */
struct kube_pod_event {
    char ns[256], name[256], uid[64];
    char type[16];     /* Normal or Warning */
    char reason[32];   /* CamelCase, as kubectl shows it */
    char message[1024];
    /* One series per pod and reason: a repeat updates the recorder's last
     * Event of this pod, type and reason (its count, lastTimestamp and
     * message: kubectl's "x3 over 5m") instead of posting another. */
    bool series;
};

/* Posts e as a new Event (count 1), from `component` (source.component and
 * reportingComponent) and `instance` (reportingInstance: the scheduler's
 * identity, the agent's node). The name the server gave it goes into
 * name[name_len] ("" when its answer named none; name may be NULL). 0, or
 * as kube_request (403: RBAC lacks create on events). */
int kube_event_post(struct kube_client *c, const struct kube_pod_event *e, const char *component,
                    const char *instance, char *name, size_t name_len,
                    struct flexpu_error *err);
/* Makes Event `name` in e->ns say that e happened again, as the count-th
 * of its series: its count, lastTimestamp and message (a merge patch). 0,
 * or as kube_request: FLEXPU_ENOENT when the server no longer has it
 * (Events expire, after an hour by default), FLEXPU_EINVAL for a 403 (RBAC
 * lacks patch on events). */
int kube_event_patch(struct kube_client *c, const struct kube_pod_event *e, const char *name,
                     int count, struct flexpu_error *err);

/* Events go out on a thread of their own with its own client, so a slow or
 * failing write never delays the caller (a bind, a kill); a bounded queue
 * (KUBE_EVENTS_MAX) drops what does not fit: events are for people and
 * carry no state. One place for the scheduler and the node agent. */
#define KUBE_EVENTS_MAX 1024
/* The series (kube_pod_event.series) a recorder follows; past it, the one
 * longest unused is forgotten and its pod's next event starts a new one. */
#define KUBE_EVENT_SERIES_MAX 256
struct kube_recorder;

/* Starts the thread; its client on cfg, bounded like an object request
 * (object_ms; 0: KUBE_TIMEOUT_OBJECT_MS). The strings are copied. */
struct kube_recorder *kube_recorder_start(const struct kube_config *cfg, const char *component,
                                          const char *instance, int object_ms,
                                          struct flexpu_error *err);
/* Queues a copy of e; never waits. False when it was dropped (the queue
 * full, or stopping): the caller counts or logs it. */
bool kube_recorder_emit(struct kube_recorder *r, const struct kube_pod_event *e);
/* Waits until nothing is queued or on the wire (tests). */
void kube_recorder_flush(struct kube_recorder *r);
/* Stops the thread (an event on the wire finishes; queued ones are
 * dropped) and frees r. NULL is fine. */
void kube_recorder_stop(struct kube_recorder *r);
/* Events posted, and those the server refused or that did not reach it. */
void kube_recorder_counts(struct kube_recorder *r, long *sent, long *failed);

/* ---- small JSON helpers for Kubernetes objects ---- */

/* obj.a.b.c as a string (NULL when absent or not a string). */
const char *kube_str(json_t *obj, const char *dotted);
json_t *kube_get(json_t *obj, const char *dotted);
/* metadata.annotations[key] (keys hold dots, so not a dotted path). */
const char *kube_annotation(json_t *obj, const char *key);
/* RFC 3339 time in UTC, seconds or micro-seconds precision. */
void kube_time_now(char *buf, size_t len, bool micro);
/* Unix second `s` as RFC 3339 in UTC, seconds precision. */
void kube_time_of(int64_t s, char *buf, size_t len);

#endif
