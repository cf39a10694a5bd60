/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's own client calls from a shell, for the end-to-end tests
 * (queue_crd_e2e.sh): the same code flexpu-scheduler runs, against a real
 * API server.
 *
 *   kube_call KUBECONFIG evict NS NAME UID|-
 *   kube_call KUBECONFIG nominate NS NAME UID|- NODE|-
 *   kube_call KUBECONFIG queue-status NAME PATCH-JSON
 *   kube_call KUBECONFIG queue-sync CLUSTER-GPUS NAME=GPUS-HELD...
 *   kube_call KUBECONFIG event-series NS POD UID N
 *
 * queue-sync is the scheduler's whole path for queues: it reads each named
 * Queue, parses it (fx_queue_parse; a refused spec gets the refused patch),
 * sets them in the engine's queues with what each holds, computes fair
 * shares for a cluster of CLUSTER-GPUS 80 GiB GPUs, and writes each status
 * (fx_queue_status_patch) back. It prints a line per queue: its parsed
 * spec in the engine's units, or the refusal.
 *
 * event-series records N MemoryReclaimed events of one pod through the
 * event recorder, as flexpu-node does (kube_pod_event.series: the first
 * posted, the others patching its count), and fails if any was not
 * recorded (borrow_mem_e2e.sh).
 *
 * Prints "ok", or the error's name and message ("EBUSY: evicting pod ...");
 * exits 0 on success, 3 for FLEXPU_EBUSY, 4 for FLEXPU_ENOENT, 1 for any
 * other error and 2 for a bad command line. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "flexpu/queue.h"
#include "kube/kube.h"
#include "kube/queue_spec.h"

static const char *opt(const char *s)
{
    return strcmp(s, "-") == 0 ? NULL : s;
}

#define SYNC_MAX 8

static void print_amounts(const char *what, const int64_t *a)
{
    printf(" %s=", what);
    for (int r = 0; r < FLEXPU_RES_COUNT_; r++)
        printf("%s%lld", r ? "," : "", (long long)a[r]);
}

/* Parses each queue; a refused one gets its refused patch at once. */
static int sync_read(struct kube_client *c, struct flexpu_queues *q, int n, char **args,
                     json_t **objs, int *ids, struct flexpu_error *err)
{
    char now[40];
    kube_time_now(now, sizeof(now), false);
    for (int i = 0; i < n; i++) {
        char name[256], path[512];
        long status;
        int64_t held[FLEXPU_RES_COUNT_] = {0};
        ids[i] = -1;
        if (sscanf(args[i], "%255[^=]=%" SCNd64, name, &held[FLEXPU_RES_GPU]) != 2)
            return flexpu_error_set(err, FLEXPU_EINVAL, "'%s' is not NAME=GPUS", args[i]);
        snprintf(path, sizeof(path), KUBE_QUEUES_PATH "/%s", name);
        int rc = kube_request(c, "GET", path, NULL, NULL, &status, &objs[i], err);
        if (rc)
            return rc;
        struct flexpu_queue_info info;
        struct flexpu_error perr = {0};
        if (fx_queue_parse(objs[i], &info, &perr)) {
            printf("%s refused: %s\n", name, perr.msg);
            json_t *patch = fx_queue_refused_patch(perr.msg, now, objs[i]);
            rc = kube_queue_patch_status(c, name, patch, err);
            json_decref(patch);
            if (rc)
                return rc;
            continue;
        }
        printf("%s parent=%s weight=%g", info.name, info.parent ? info.parent : "", info.weight);
        print_amounts("guaranteed", info.guaranteed);
        print_amounts("limit", info.limit);
        printf("\n");
        if ((rc = flexpu_queues_set(q, &info, &ids[i], err)))
            return rc;
        held[FLEXPU_RES_GPU_MILLI] = held[FLEXPU_RES_GPU] * 1000;
        flexpu_queues_allocated(q, ids[i], held, +1);
    }
    return 0;
}

static int queue_sync(struct kube_client *c, int argc, char **argv, struct flexpu_error *err)
{
    int n = argc - 4;
    if (n < 1 || n > SYNC_MAX)
        return flexpu_error_set(err, FLEXPU_EINVAL, "queue-sync takes 1 to %d queues", SYNC_MAX);
    int64_t gpus = 0;
    if (sscanf(argv[3], "%" SCNd64, &gpus) != 1 || gpus < 0)
        return flexpu_error_set(err, FLEXPU_EINVAL, "CLUSTER-GPUS '%s'", argv[3]);
    struct flexpu_queues *q = flexpu_queues_new();
    json_t *objs[SYNC_MAX] = {0};
    int ids[SYNC_MAX];
    int rc = q ? sync_read(c, q, n, argv + 4, objs, ids, err)
               : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    if (!rc) {
        int64_t cap[FLEXPU_RES_COUNT_] = {gpus, gpus * 1000, gpus * 81920, gpus * 16000,
                                          gpus * 131072};
        flexpu_queues_compute(q, cap);
    }
    char now[40];
    kube_time_now(now, sizeof(now), false);
    for (int i = 0; !rc && i < n; i++) {
        struct flexpu_queue_status st;
        if (ids[i] < 0 || !flexpu_queues_get(q, ids[i], &st))
            continue;
        json_t *patch = fx_queue_status_patch(&st, now, objs[i]);
        rc = patch ? kube_queue_patch_status(c, st.name, patch, err)
                   : flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
        json_decref(patch);
    }
    for (int i = 0; i < n; i++)
        json_decref(objs[i]);
    flexpu_queues_free(q);
    return rc;
}

static int call(struct kube_client *c, int argc, char **argv, struct flexpu_error *err)
{
    const char *what = argv[2];
    if (strcmp(what, "evict") == 0 && argc == 6)
        return kube_evict(c, argv[3], argv[4], opt(argv[5]), err);
    if (strcmp(what, "nominate") == 0 && argc == 7)
        return kube_nominate(c, argv[3], argv[4], opt(argv[5]), opt(argv[6]), err);
    if (strcmp(what, "queue-sync") == 0 && argc >= 5)
        return queue_sync(c, argc, argv, err);
    if (strcmp(what, "queue-status") == 0 && argc == 5) {
        json_error_t je;
        json_t *patch = json_loads(argv[4], 0, &je);
        if (!patch)
            return flexpu_error_set(err, FLEXPU_EPARSE, "PATCH-JSON: %s", je.text);
        int rc = kube_queue_patch_status(c, argv[3], patch, err);
        json_decref(patch);
        return rc;
    }
    return 1;
}

static int event_series(const struct kube_config *cfg, char **argv, struct flexpu_error *err)
{
    int n = atoi(argv[6]);
    if (n < 1 || n > 100)
        return flexpu_error_set(err, FLEXPU_EINVAL, "N '%s': 1 to 100", argv[6]);
    struct kube_recorder *r = kube_recorder_start(cfg, "flexpu-node", "e2e", 0, err);
    if (!r)
        return err->code ? err->code : FLEXPU_ENOMEM;
    struct kube_pod_event e = {.type = "Warning", .reason = "MemoryReclaimed", .series = true};
    snprintf(e.ns, sizeof(e.ns), "%s", argv[3]);
    snprintf(e.name, sizeof(e.name), "%s", argv[4]);
    snprintf(e.uid, sizeof(e.uid), "%s", argv[5]);
    int queued = 0;
    for (int i = 1; i <= n; i++) {
        snprintf(e.message, sizeof(e.message), "series check %d of %d", i, n);
        queued += kube_recorder_emit(r, &e);
    }
    kube_recorder_flush(r);
    long sent, failed;
    kube_recorder_counts(r, &sent, &failed);
    kube_recorder_stop(r);
    if (queued != n || sent != n)
        return flexpu_error_set(err, FLEXPU_EIO, "%d of %d events queued, %ld recorded, %ld "
                                "failed (the recorder's log says why)", queued, n, sent, failed);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kube_call KUBECONFIG "
                        "evict|nominate|queue-status|queue-sync|event-series ARGS...\n");
        return 2;
    }
    struct flexpu_error err = {0};
    struct kube_config cfg;
    if (kube_config_load(argv[1], NULL, &cfg, &err)) {
        fprintf(stderr, "kube_call: %s\n", err.msg);
        return 1;
    }
    int rc;
    if (strcmp(argv[2], "event-series") == 0) {
        rc = argc == 7 ? event_series(&cfg, argv, &err) : 1;
        kube_config_free(&cfg);
    } else {
        struct kube_client *c = kube_client_new(&cfg, "flexpu-e2e", &err);
        kube_config_free(&cfg);
        if (!c) {
            fprintf(stderr, "kube_call: %s\n", err.msg);
            return 1;
        }
        rc = call(c, argc, argv, &err);
        kube_client_free(c);
    }
    if (rc == 1) {
        fprintf(stderr, "kube_call: bad arguments for '%s'\n", argv[2]);
        return 2;
    }
    if (rc == 0) {
        printf("ok\n");
        return 0;
    }
    printf("%s: %s\n", flexpu_err_name(rc), err.msg);
    return rc == FLEXPU_EBUSY ? 3 : rc == FLEXPU_ENOENT ? 4 : 1;
}
