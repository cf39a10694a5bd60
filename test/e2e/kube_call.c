/* SPDX-License-Identifier: Apache-2.0 */
/* The scheduler's own client calls from a shell, for the end-to-end tests
 * (queue_crd_e2e.sh): the same code flexpu-scheduler runs, against a real
 * API server.
 *
 *   kube_call KUBECONFIG evict NS NAME UID|-
 *   kube_call KUBECONFIG nominate NS NAME UID|- NODE|-
 *   kube_call KUBECONFIG queue-status NAME PATCH-JSON
 *
 * Prints "ok", or the error's name and message ("EBUSY: evicting pod ...");
 * exits 0 on success, 3 for FLEXPU_EBUSY, 4 for FLEXPU_ENOENT, 1 for any
 * other error and 2 for a bad command line. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "kube/kube.h"

static const char *opt(const char *s)
{
    return strcmp(s, "-") == 0 ? NULL : s;
}

static int call(struct kube_client *c, int argc, char **argv, struct flexpu_error *err)
{
    const char *what = argv[2];
    if (strcmp(what, "evict") == 0 && argc == 6)
        return kube_evict(c, argv[3], argv[4], opt(argv[5]), err);
    if (strcmp(what, "nominate") == 0 && argc == 7)
        return kube_nominate(c, argv[3], argv[4], opt(argv[5]), opt(argv[6]), err);
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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kube_call KUBECONFIG evict|nominate|queue-status ARGS...\n");
        return 2;
    }
    struct flexpu_error err = {0};
    struct kube_config cfg;
    if (kube_config_load(argv[1], NULL, &cfg, &err)) {
        fprintf(stderr, "kube_call: %s\n", err.msg);
        return 1;
    }
    struct kube_client *c = kube_client_new(&cfg, "flexpu-e2e", &err);
    kube_config_free(&cfg);
    if (!c) {
        fprintf(stderr, "kube_call: %s\n", err.msg);
        return 1;
    }
    int rc = call(c, argc, argv, &err);
    kube_client_free(c);
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
