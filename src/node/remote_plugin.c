/* SPDX-License-Identifier: Apache-2.0 */
#include "node/remote_plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deviceplugin/v1beta1/api.pb-c.h"
#include "flexpu/log.h"
#include "kube/contract.h"
#include "node/dp_reply.h"
#include "node/file_install.h"
#include "node/plugin.h"
#include "node/remote.h"
#include "node/remote_agent.h"
#include "node/slices.h"
#include "podresources/v1/api.pb-c.h"

#define COMP "node"

/* A pod bound here with a remote slice. */
struct rpod {
    char uid[64], ns[256], name[256];
    char gpu_node[FX_NODE_NAME_MAX], gpu_uuid[FX_UUID_MAX]; /* its first GPU: the token's */
    int ngpu;           /* its allocation's GPUs: the devices its container holds */
    char endpoint[320]; /* flexpu.io/remote-endpoint; "" until recorded */
    char created[40];   /* metadata.creationTimestamp (RFC 3339: ordered as text) */
    bool deleting;      /* metadata.deletionTimestamp set */
    bool seen;
    struct rpod *next;
};

/* A set of devices the kubelet allocated, and the pod it turned out to be.
 * The kubelet names that pod by namespace/name only (PodResources): the
 * UID is the watch's pod of that name at PreStartContainer. A watch behind
 * the kubelet may still hold a deleted pod of the same name (a
 * StatefulSet's, recreated): when that UID goes and a pod of the name
 * remains, the slot is the new pod's, and its token is derived again. */
struct rslot {
    char key[FX_SLICE_KEY_LEN + 1];
    char uid[64];       /* "" until PreStartContainer, or once its pod is gone */
    char ns[256], name[256]; /* the pod the kubelet said holds the devices */
    char written[320];  /* the endpoint in its directory */
    struct rslot *next;
};

struct fx_remote_plugin {
    struct fx_remote_plugin_config cfg;
    char root[400], podres[400], node[256];
    pthread_mutex_t mu;
    pthread_cond_t changed;
    struct rpod *pods;
    struct rslot *slots;
};

struct fx_remote_plugin *fx_remote_plugin_new(const struct fx_remote_plugin_config *cfg,
                                              struct flexpu_error *err)
{
    if (cfg->slots < 1 || cfg->slots > FX_REMOTE_SLOTS_MAX) {
        char v[16];
        snprintf(v, sizeof(v), "%d", cfg->slots);
        flexpu_error_field(err, FLEXPU_EINVAL, "--remote-slots", v, strlen(v),
                           "must be 1-256 (on a node without GPUs)");
        return NULL;
    }
    if (!cfg->key || cfg->key->len < FX_REMOTE_KEY_MIN) {
        flexpu_error_set(err, FLEXPU_EINVAL, "--remote-slots needs the cluster key "
                                             "(--remote-key)");
        return NULL;
    }
    struct fx_remote_plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    snprintf(p->root, sizeof(p->root), "%s", cfg->root);
    snprintf(p->podres, sizeof(p->podres), "%s", cfg->podresources ? cfg->podresources : "");
    snprintf(p->node, sizeof(p->node), "%s", cfg->node_name);
    p->cfg.root = p->root;
    p->cfg.podresources = p->podres;
    p->cfg.node_name = p->node;
    if (p->cfg.wait_ms <= 0)
        p->cfg.wait_ms = 10000;
    char path[600];
    snprintf(path, sizeof(path), "%s/rslices", p->root);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", path, strerror(errno));
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->changed, NULL);
    return p;
}

void fx_remote_plugin_free(struct fx_remote_plugin *p)
{
    if (!p)
        return;
    for (struct rpod *q = p->pods, *n; q; q = n) {
        n = q->next;
        free(q);
    }
    for (struct rslot *s = p->slots, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->changed);
    free(p);
}

static struct rpod *pod_by_uid(struct fx_remote_plugin *p, const char *uid)
{
    for (struct rpod *q = p->pods; q; q = q->next)
        if (strcmp(q->uid, uid) == 0)
            return q;
    return NULL;
}

/* The live pod named ns/name: not being deleted, the newest when a lagging
 * watch holds two; NULL when none (or only one being deleted: the kubelet
 * starts no container of a pod being deleted, so its successor is awaited). */
static struct rpod *pod_by_name(struct fx_remote_plugin *p, const char *ns, const char *name)
{
    struct rpod *best = NULL;
    for (struct rpod *q = p->pods; q; q = q->next)
        if (!q->deleting && strcmp(q->ns, ns) == 0 && strcmp(q->name, name) == 0 &&
            (!best || strcmp(q->created, best->created) > 0))
            best = q;
    return best;
}

static struct rslot *slot_of_uid(struct fx_remote_plugin *p, const char *uid)
{
    for (struct rslot *s = p->slots; s; s = s->next)
        if (strcmp(s->uid, uid) == 0)
            return s;
    return NULL;
}

static void pod_drop(struct fx_remote_plugin *p, struct rpod *victim)
{
    for (struct rpod **pp = &p->pods; *pp; pp = &(*pp)->next)
        if (*pp == victim) {
            *pp = victim->next;
            free(victim);
            return;
        }
}

void fx_remote_plugin_pod_event(struct fx_remote_plugin *p, enum kube_event ev, json_t *obj)
{
    pthread_mutex_lock(&p->mu);
    if (ev == KUBE_SYNC_BEGIN) {
        for (struct rpod *q = p->pods; q; q = q->next)
            q->seen = false;
    } else if (ev == KUBE_SYNC_END) {
        for (struct rpod *q = p->pods, *n; q; q = n) {
            n = q->next;
            if (!q->seen)
                pod_drop(p, q);
        }
    } else {
        const char *uid = kube_str(obj, "metadata.uid");
        struct rpod *q = uid ? pod_by_uid(p, uid) : NULL;
        struct fx_allocation al;
        struct flexpu_error err = {0};
        const char *text = kube_annotation(obj, FX_ANN_ALLOCATION);
        bool mine = ev != KUBE_DELETED && uid && strlen(uid) < sizeof(q->uid) && text &&
                    fx_allocation_parse(text, &al, &err) == 0 &&
                    fx_remote_role(&al, kube_str(obj, "spec.nodeName"), p->node) ==
                        FX_REMOTE_CLIENT;
        if (!mine) {
            if (q)
                pod_drop(p, q);
        } else if (q || (q = calloc(1, sizeof(*q)))) {
            if (!q->uid[0]) {
                q->next = p->pods;
                p->pods = q;
            }
            snprintf(q->uid, sizeof(q->uid), "%s", uid);
            snprintf(q->ns, sizeof(q->ns), "%s", kube_str(obj, "metadata.namespace") ?: "");
            snprintf(q->name, sizeof(q->name), "%s", kube_str(obj, "metadata.name") ?: "");
            snprintf(q->created, sizeof(q->created), "%s",
                     kube_str(obj, "metadata.creationTimestamp") ?: "");
            q->deleting = kube_str(obj, "metadata.deletionTimestamp") != NULL;
            snprintf(q->gpu_node, sizeof(q->gpu_node), "%s", al.remote_node);
            snprintf(q->gpu_uuid, sizeof(q->gpu_uuid), "%s", al.gpus[0].uuid);
            q->ngpu = al.ngpu;
            const char *ep = kube_annotation(obj, FX_ANN_REMOTE_ENDPOINT);
            /* A malformed endpoint is never handed to the client. */
            if (ep && fx_remote_endpoint_check(ep, "metadata.annotations[" FX_ANN_REMOTE_ENDPOINT
                                               "]", &err) != 0) {
                FX_WARN(COMP, "remote endpoint ignored", "pod=%s/%s error=\"%s\"", q->ns,
                        q->name, err.msg);
                ep = NULL;
            }
            snprintf(q->endpoint, sizeof(q->endpoint), "%s", ep ? ep : "");
            q->seen = true;
        }
    }
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    fx_remote_plugin_tick(p); /* an endpoint recorded now reaches the container now */
}

static void slot_dir(const struct fx_remote_plugin *p, const char *key, const char *file,
                     char *out, size_t len)
{
    snprintf(out, len, "%s/rslices/%s%s%s", p->root, key, file ? "/" : "", file ? file : "");
}

static void slot_files_remove(const struct fx_remote_plugin *p, const char *key)
{
    char path[700];
    slot_dir(p, key, "token", path, sizeof(path));
    unlink(path);
    slot_dir(p, key, "endpoint", path, sizeof(path));
    unlink(path);
}

/* Writes the token of pod `uid`'s slice of GPU guuid on gnode into slot
 * `key`'s directory. 0, or -1 with err set. */
static int slot_token_write(const struct fx_remote_plugin *p, const char *key, const char *uid,
                            const char *gnode, const char *guuid, struct flexpu_error *err)
{
    char hex[FX_REMOTE_TOKEN_HEX + 1], path[700], dir[600];
    slot_dir(p, key, NULL, dir, sizeof(dir));
    slot_dir(p, key, "token", path, sizeof(path));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", dir, strerror(errno));
    /* 0644 in a directory only this container mounts: its user, any
     * user, must read it. */
    if (fx_remote_token(p->cfg.key, uid, gnode, guuid, hex, err) != 0 ||
        fx_remote_token_write(path, hex, 0644, err) != 0)
        return -1;
    return 0;
}

/* Lock held. Slot `s` lost its pod's UID: the live pod of the name the
 * kubelet gave, if no slot has it yet, is the one its container belongs
 * to (struct rslot). */
static void slot_adopt(struct fx_remote_plugin *p, struct rslot *s)
{
    struct rpod *q = s->name[0] ? pod_by_name(p, s->ns, s->name) : NULL;
    if (!q || slot_of_uid(p, q->uid))
        return;
    struct flexpu_error err = {0};
    if (slot_token_write(p, s->key, q->uid, q->gpu_node, q->gpu_uuid, &err) != 0) {
        FX_WARN(COMP, "remote token not written; will retry", "pod=%s/%s key=%s error=\"%s\"",
                q->ns, q->name, s->key, err.msg);
        return;
    }
    snprintf(s->uid, sizeof(s->uid), "%s", q->uid);
    s->written[0] = 0;
    FX_INFO(COMP, "remote slot given to the pod recreated under its name", "pod=%s/%s uid=%s "
            "key=%s", q->ns, q->name, q->uid, s->key);
}

void fx_remote_plugin_tick(struct fx_remote_plugin *p)
{
    pthread_mutex_lock(&p->mu);
    for (struct rslot **sp = &p->slots, *s; (s = *sp);) {
        struct rpod *q = s->uid[0] ? pod_by_uid(p, s->uid) : NULL;
        if (s->uid[0] && !q) {
            /* The pod is gone: its token and endpoint with it. The slot
             * stays for a pod recreated under the same name. */
            slot_files_remove(p, s->key);
            s->uid[0] = 0;
            s->written[0] = 0;
        }
        if (!s->uid[0]) {
            slot_adopt(p, s);
            q = s->uid[0] ? pod_by_uid(p, s->uid) : NULL;
        }
        if (!q) {
            sp = &s->next;
            continue;
        }
        if (q->endpoint[0] && strcmp(q->endpoint, s->written) != 0) {
            char path[700], text[330];
            struct flexpu_error err = {0};
            slot_dir(p, s->key, "endpoint", path, sizeof(path));
            snprintf(text, sizeof(text), "%s\n", q->endpoint);
            if (fx_file_replace(path, text, 0644, &err) == 0) {
                snprintf(s->written, sizeof(s->written), "%s", q->endpoint);
                FX_INFO(COMP, "remote endpoint given to the container", "pod=%s/%s key=%s "
                        "endpoint=%s", q->ns, q->name, s->key, q->endpoint);
            } else {
                FX_WARN(COMP, "remote endpoint not written; will retry", "path=%s error=\"%s\"",
                        path, err.msg);
            }
        }
        sp = &s->next;
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---- gRPC ---- */

/* dp_reply.c's, logged as this file's component. */
#define fail(r, status, ...) fx_dp_fail(COMP, r, status, __VA_ARGS__)
#define packed(r, m)         fx_dp_packed(COMP, r, m)

/* Whether id is one of ours: "remote-<k>", k < slots. */
static bool slot_id(const struct fx_remote_plugin *p, const char *id)
{
    int k = -1, n = 0;
    return sscanf(id, "remote-%d%n", &k, &n) == 1 && id[n] == 0 && k >= 0 &&
           k < p->cfg.slots && (k == 0 || id[7] != '0');
}

static int ids_check(const struct fx_remote_plugin *p, char **ids, size_t n,
                     struct fx_grpc_reply *r)
{
    /* A remote pod of N GPUs holds N slots (the scheduler counts them so);
     * its container one slice directory, keyed by all of them. */
    if (n < 1 || n > FLEXPU_MAX_GPUS) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "%zu devices of flexpu.io/gpu in one container: a "
             "remote pod has 1-%d (node %s has no GPUs)", n, FLEXPU_MAX_GPUS, p->node);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!slot_id(p, ids[i])) {
            fail(r, FX_GRPC_INVALID_ARGUMENT, "unknown device '%.80s' (node %s advertises "
                 "\"remote-<0..%d>\")", ids[i], p->node, p->cfg.slots - 1);
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(ids[i], ids[k]) == 0) {
                fail(r, FX_GRPC_INVALID_ARGUMENT, "device '%.80s' given twice", ids[i]);
                return -1;
            }
    }
    return 0;
}

int fx_remote_plugin_device_list(struct fx_remote_plugin *p, uint8_t **msg, size_t *len)
{
    size_t n = (size_t)p->cfg.slots;
    V1beta1__Device devs[FX_REMOTE_SLOTS_MAX], *ptrs[FX_REMOTE_SLOTS_MAX];
    char ids[FX_REMOTE_SLOTS_MAX][32];
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "remote-%zu", i);
        v1beta1__device__init(&devs[i]);
        devs[i].id = ids[i];
        devs[i].health = "Healthy";
        ptrs[i] = &devs[i];
    }
    V1beta1__ListAndWatchResponse m = V1BETA1__LIST_AND_WATCH_RESPONSE__INIT;
    m.n_devices = n;
    m.devices = ptrs;
    *len = v1beta1__list_and_watch_response__get_packed_size(&m);
    *msg = malloc(*len ? *len : 1);
    if (!*msg)
        return -1;
    v1beta1__list_and_watch_response__pack(&m, *msg);
    return 0;
}

static void list_and_watch(void *ctx, struct fx_grpc_reply *r)
{
    if (fx_remote_plugin_device_list(ctx, &r->data, &r->len) != 0)
        fail(r, FX_GRPC_INTERNAL, "out of memory");
}

struct ctr_answer {
    V1beta1__ContainerAllocateResponse resp;
    V1beta1__ContainerAllocateResponse__EnvsEntry env[4], *envp[4];
    V1beta1__Mount mount[2], *mountp[2];
    char lib[420], dir[500];
    char key[FX_SLICE_KEY_LEN + 1];
};

static void allocate(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    struct fx_remote_plugin *p = ctx;
    V1beta1__AllocateRequest *in = v1beta1__allocate_request__unpack(NULL, len, req);
    if (!in) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "malformed AllocateRequest");
        return;
    }
    size_t nc = in->n_container_requests;
    struct ctr_answer *a = calloc(nc ? nc : 1, sizeof(*a));
    V1beta1__ContainerAllocateResponse **ap = calloc(nc ? nc : 1, sizeof(*ap));
    if (!a || !ap) {
        fail(r, FX_GRPC_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t c = 0; c < nc; c++) {
        V1beta1__ContainerAllocateRequest *q = in->container_requests[c];
        if (ids_check(p, q->devices_ids, q->n_devices_ids, r) != 0 ||
            fx_slice_key(q->devices_ids, q->n_devices_ids, a[c].key) != 0) {
            if (!r->status)
                fail(r, FX_GRPC_INTERNAL, "out of memory");
            goto out;
        }
        slot_dir(p, a[c].key, NULL, a[c].dir, sizeof(a[c].dir));
        if (mkdir(a[c].dir, 0755) != 0 && errno != EEXIST) {
            fail(r, FX_GRPC_INTERNAL, "cannot create '%s': %s", a[c].dir, strerror(errno));
            goto out;
        }
        /* The device may have served an earlier pod: nothing of its slice
         * stays for this one. */
        pthread_mutex_lock(&p->mu);
        struct rslot *s = p->slots;
        while (s && strcmp(s->key, a[c].key) != 0)
            s = s->next;
        if (!s && (s = calloc(1, sizeof(*s)))) {
            snprintf(s->key, sizeof(s->key), "%s", a[c].key);
            s->next = p->slots;
            p->slots = s;
        }
        if (s) {
            s->uid[0] = 0;
            s->ns[0] = 0;
            s->name[0] = 0;
            s->written[0] = 0;
        }
        slot_files_remove(p, a[c].key);
        pthread_mutex_unlock(&p->mu);
        if (!s) {
            fail(r, FX_GRPC_INTERNAL, "out of memory");
            goto out;
        }
        snprintf(a[c].lib, sizeof(a[c].lib), "%s/remote-lib", p->root);
        v1beta1__container_allocate_response__init(&a[c].resp);
        const char *ctr[2] = {FX_CTR_REMOTE_LIB, FX_CTR_REMOTE_DIR};
        char *host[2] = {a[c].lib, a[c].dir};
        for (int i = 0; i < 2; i++) {
            v1beta1__mount__init(&a[c].mount[i]);
            a[c].mount[i].container_path = (char *)ctr[i];
            a[c].mount[i].host_path = host[i];
            a[c].mount[i].read_only = 1;
            a[c].mountp[i] = &a[c].mount[i];
        }
        a[c].resp.n_mounts = 2;
        a[c].resp.mounts = a[c].mountp;
        /* LD_PRELOAD: the client wins over the application's own runtime
         * and cuBLAS, whatever their RUNPATH (a wheel's). */
        static const char *const ek[4] = {"LD_PRELOAD", "FLEXPU_REMOTE_ADDR_FILE",
                                          "FLEXPU_REMOTE_TOKEN_FILE", "FLEXPU_ALLOCATION"};
        const char *ev[4] = {FX_CTR_REMOTE_LIB "/libcudart.so.12 " FX_CTR_REMOTE_LIB
                                               "/libcublas.so.12",
                             FX_CTR_REMOTE_DIR "/endpoint", FX_CTR_REMOTE_DIR "/token",
                             a[c].key};
        fx_dp_envs(&a[c].resp, a[c].env, a[c].envp, ek, ev, 4);
        ap[c] = &a[c].resp;
        FX_INFO(COMP, "allocated a remote slot", "key=%s device=%s", a[c].key,
                q->devices_ids[0]);
    }
    V1beta1__AllocateResponse resp = V1BETA1__ALLOCATE_RESPONSE__INIT;
    resp.n_container_responses = nc;
    resp.container_responses = ap;
    packed(r, &resp.base);
out:
    free(a);
    free(ap);
    v1beta1__allocate_request__free_unpacked(in, NULL);
}

/* The pod (namespace/name) whose container holds device `id`, from the
 * kubelet's PodResources; -1 with why. */
static int pod_holding(struct fx_remote_plugin *p, const char *id, char *ns, size_t ns_len,
                       char *name, size_t name_len, char *why, size_t why_len)
{
    V1__ListPodResourcesResponse *res = fx_dp_podres_list(p->podres, why, why_len);
    if (!res)
        return -1;
    int found = -1;
    for (size_t i = 0; found && i < res->n_pod_resources; i++) {
        V1__PodResources *pr = res->pod_resources[i];
        for (size_t c = 0; found && c < pr->n_containers; c++)
            for (size_t d = 0; found && d < pr->containers[c]->n_devices; d++) {
                V1__ContainerDevices *cd = pr->containers[c]->devices[d];
                for (size_t b = 0; found && b < cd->n_device_ids; b++)
                    if (strcmp(cd->resource_name, FX_DP_RESOURCE) == 0 &&
                        strcmp(cd->device_ids[b], id) == 0) {
                        snprintf(ns, ns_len, "%s", pr->namespace_);
                        snprintf(name, name_len, "%s", pr->name);
                        found = 0;
                    }
            }
    }
    v1__list_pod_resources_response__free_unpacked(res, NULL);
    if (found)
        snprintf(why, why_len, "the kubelet's PodResources lists no container with device %s",
                 id);
    return found;
}

static void prestart(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    struct fx_remote_plugin *p = ctx;
    V1beta1__PreStartContainerRequest *in =
        v1beta1__pre_start_container_request__unpack(NULL, len, req);
    if (!in) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "malformed PreStartContainerRequest");
        return;
    }
    char key[FX_SLICE_KEY_LEN + 1], ns[256], name[256], why[300];
    if (ids_check(p, in->devices_ids, in->n_devices_ids, r) != 0)
        goto out;
    if (fx_slice_key(in->devices_ids, in->n_devices_ids, key) != 0) {
        fail(r, FX_GRPC_INTERNAL, "out of memory");
        goto out;
    }
    if (pod_holding(p, in->devices_ids[0], ns, sizeof(ns), name, sizeof(name), why,
                    sizeof(why)) != 0) {
        fail(r, FX_GRPC_FAILED_PRECONDITION, "%s", why);
        goto out;
    }
    /* The pod watch may be behind the kubelet: wait for the pod, bounded. */
    pthread_mutex_lock(&p->mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += p->cfg.wait_ms / 1000;
    dl.tv_nsec += (long)(p->cfg.wait_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    struct rpod *q;
    while (!(q = pod_by_name(p, ns, name)))
        if (pthread_cond_timedwait(&p->changed, &p->mu, &dl) == ETIMEDOUT)
            break;
    if (!q) {
        pthread_mutex_unlock(&p->mu);
        fail(r, FX_GRPC_FAILED_PRECONDITION, "pod %s/%s holds device %s but has no remote "
             "slice (no allocation marked remote for node %s): it must be placed by "
             "flexpu-scheduler with %s: \"%s\"", ns, name, in->devices_ids[0], p->node,
             FX_ANN_REMOTE, FX_REMOTE_ALLOWED);
        goto out;
    }
    if ((size_t)q->ngpu != in->n_devices_ids) {
        int ng = q->ngpu;
        pthread_mutex_unlock(&p->mu);
        fail(r, FX_GRPC_FAILED_PRECONDITION, "pod %s/%s holds %zu device(s) of %s here but its "
             "remote allocation has %d GPU(s)", ns, name, in->n_devices_ids, FX_RES_GPU, ng);
        goto out;
    }
    char uid[64], gnode[FX_NODE_NAME_MAX], guuid[FX_UUID_MAX];
    snprintf(uid, sizeof(uid), "%s", q->uid);
    snprintf(gnode, sizeof(gnode), "%s", q->gpu_node);
    snprintf(guuid, sizeof(guuid), "%s", q->gpu_uuid);
    struct rslot *s = p->slots;
    while (s && strcmp(s->key, key) != 0)
        s = s->next;
    if (!s && (s = calloc(1, sizeof(*s)))) {
        snprintf(s->key, sizeof(s->key), "%s", key);
        s->next = p->slots;
        p->slots = s;
    }
    /* Another slot that took this UID by its name (slot_adopt) was a dead
     * container's: the kubelet says this one holds the pod now. */
    for (struct rslot *o = p->slots; o; o = o->next) {
        if (o != s && strcmp(o->uid, uid) == 0) {
            slot_files_remove(p, o->key);
            o->uid[0] = o->ns[0] = o->name[0] = o->written[0] = 0;
        }
    }
    if (s) {
        snprintf(s->ns, sizeof(s->ns), "%s", ns);
        snprintf(s->name, sizeof(s->name), "%s", name);
    }
    if (s && strcmp(s->uid, uid) != 0) {
        snprintf(s->uid, sizeof(s->uid), "%s", uid);
        s->written[0] = 0;
    }
    struct flexpu_error err = {0};
    int rc = slot_token_write(p, key, uid, gnode, guuid, &err);
    pthread_mutex_unlock(&p->mu);
    if (rc != 0) {
        fail(r, FX_GRPC_INTERNAL, "pod %s/%s: the slice's token: %s", ns, name, err.msg);
        goto out;
    }
    FX_INFO(COMP, "remote slice ready to start", "pod=%s/%s key=%s gpu_node=%s gpu=%s", ns,
            name, key, gnode, guuid);
    V1beta1__PreStartContainerResponse resp = V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;
    packed(r, &resp.base);
out:
    v1beta1__pre_start_container_request__free_unpacked(in, NULL);
    fx_remote_plugin_tick(p); /* an endpoint known already is written now */
}

/* Any slot serves any remote pod: the must-include ones, then the first
 * available, allocation_size in all (the registration says the plugin
 * answers this call). */
static void preferred(void *ctx, const uint8_t *req, size_t len, struct fx_grpc_reply *r)
{
    (void)ctx;
    V1beta1__PreferredAllocationRequest *in =
        v1beta1__preferred_allocation_request__unpack(NULL, len, req);
    if (!in) {
        fail(r, FX_GRPC_INVALID_ARGUMENT, "malformed PreferredAllocationRequest");
        return;
    }
    size_t nc = in->n_container_requests;
    V1beta1__ContainerPreferredAllocationResponse *a = calloc(nc ? nc : 1, sizeof(*a));
    V1beta1__ContainerPreferredAllocationResponse **ap = calloc(nc ? nc : 1, sizeof(*ap));
    char ***ids = calloc(nc ? nc : 1, sizeof(*ids));
    if (!a || !ap || !ids) {
        fail(r, FX_GRPC_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t c = 0; c < nc; c++) {
        V1beta1__ContainerPreferredAllocationRequest *q = in->container_requests[c];
        size_t want = q->allocation_size > 0 ? (size_t)q->allocation_size : 0, n = 0;
        ids[c] = calloc(want ? want : 1, sizeof(char *));
        if (!ids[c]) {
            fail(r, FX_GRPC_INTERNAL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < q->n_must_include_deviceids && n < want; i++)
            ids[c][n++] = q->must_include_deviceids[i];
        for (size_t i = 0; i < q->n_available_deviceids && n < want; i++) {
            bool dup = false;
            for (size_t k = 0; k < n && !dup; k++)
                dup = strcmp(ids[c][k], q->available_deviceids[i]) == 0;
            if (!dup)
                ids[c][n++] = q->available_deviceids[i];
        }
        v1beta1__container_preferred_allocation_response__init(&a[c]);
        a[c].n_deviceids = n;
        a[c].deviceids = ids[c];
        ap[c] = &a[c];
    }
    V1beta1__PreferredAllocationResponse resp = V1BETA1__PREFERRED_ALLOCATION_RESPONSE__INIT;
    resp.n_container_responses = nc;
    resp.container_responses = ap;
    packed(r, &resp.base);
out:
    for (size_t c = 0; ids && c < nc; c++)
        free(ids[c]);
    free(ids);
    free(a);
    free(ap);
    v1beta1__preferred_allocation_request__free_unpacked(in, NULL);
}

const struct fx_grpc_method fx_remote_plugin_methods[] = {
    {"/v1beta1.DevicePlugin/GetDevicePluginOptions", fx_dp_get_options, NULL},
    {FX_DP_LIST_AND_WATCH, NULL, list_and_watch},
    {"/v1beta1.DevicePlugin/GetPreferredAllocation", preferred, NULL},
    {"/v1beta1.DevicePlugin/Allocate", allocate, NULL},
    {"/v1beta1.DevicePlugin/PreStartContainer", prestart, NULL},
    {NULL, NULL, NULL},
};

/* ---- the client libraries ---- */

int fx_remote_client_install(const char *root, const char *from, struct flexpu_error *err)
{
    char dir[600], src[700], dst[700];
    snprintf(dir, sizeof(dir), "%s/remote-lib", root);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return flexpu_error_set(err, FLEXPU_EIO, "cannot create '%s': %s", dir, strerror(errno));
    static const char *const libs[] = {"libcudart.so.12", "libcublas.so.12"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(src, sizeof(src), "%s/%s", from, libs[i]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, libs[i]);
        int rc = fx_file_install(src, dst, "--remote-client-dir:", err);
        if (rc != 0)
            return rc;
    }
    return 0;
}
