/* SPDX-License-Identifier: Apache-2.0 */
/* The node agent's MIG setup (src/node/mig.c) on its own, without a
 * cluster: discovers the GPUs through NVML, keeps GPU --gpu N only, applies
 * the layout and prints the GPUs the agent would publish, one per line:
 *   gpu <index> <uuid> <model> <memory bytes> mig=<profile|-> gi=<id> ci=<id> minor=<n>
 * For test/gpu/mig_check.sh on a GPU with MIG, and run against the fake
 * NVML in CTest (mig_probe_fake).
 *
 *   mig_probe [--nvml PATH] [--gpu N] LAYOUT|auto|list
 * auto: a layout of the GPU's own profiles, one 3-slice, one 2-slice and
 * two 1-slice instances (seven slices), or as many 1-slice ones as fit;
 * list: prints "profile <name> <slices>" for each profile of the GPU (MIG
 * enabled first if it was off) and changes nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexpu/log.h"
#include "node/gpus.h"
#include "node/mig.h"

/* The first profile of `want` slices, or NULL. */
static const char *of_slices(char names[][FX_MIG_NAME_MAX], const unsigned *slices, int n,
                             unsigned want)
{
    for (int i = 0; i < n; i++)
        if (slices[i] == want)
            return names[i];
    return NULL;
}

static int auto_layout(struct fx_nvml *nv, const struct fx_node_gpu *g, char *out, size_t len,
                       struct flexpu_error *err)
{
    char names[16][FX_MIG_NAME_MAX];
    unsigned slices[16];
    int n = fx_mig_profiles(nv, g, names, slices, 16, err);
    if (n <= 0) {
        if (n == 0)
            flexpu_error_set(err, FLEXPU_ENOENT, "GPU %d (%s) has no MIG", g->index, g->uuid);
        return -1;
    }
    const char *p3 = of_slices(names, slices, n, 3), *p2 = of_slices(names, slices, n, 2),
               *p1 = of_slices(names, slices, n, 1);
    unsigned most = 0;
    for (int i = 0; i < n; i++)
        most = slices[i] > most ? slices[i] : most;
    if (p3 && p2 && p1 && most >= 7)
        snprintf(out, len, "%s,%s,%s*2", p3, p2, p1);
    else if (p1)
        snprintf(out, len, "%s*%u", p1, most < 8 ? most : 8);
    else
        return flexpu_error_set(err, FLEXPU_ENOENT, "GPU %d has no 1-slice profile", g->index);
    return 0;
}

int main(int argc, char **argv)
{
    const char *nvml = NULL, *layout_text = NULL;
    int only = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nvml") == 0 && i + 1 < argc)
            nvml = argv[++i];
        else if (strcmp(argv[i], "--gpu") == 0 && i + 1 < argc)
            only = atoi(argv[++i]);
        else if (!layout_text && argv[i][0] != '-')
            layout_text = argv[i];
        else
            layout_text = NULL, i = argc;
    }
    if (!layout_text) {
        fprintf(stderr, "usage: mig_probe [--nvml PATH] [--gpu N] LAYOUT|auto|list\n");
        return 2;
    }
    flexpu_log_set_level(FLEXPU_LOG_WARN);
    struct flexpu_error err = {0};
    struct fx_nvml *nv = fx_nvml_open(nvml, &err);
    struct fx_node_gpu gpus[FLEXPU_MAX_GPUS];
    int n = 0;
    if (!nv || fx_nvml_discover(nv, gpus, FLEXPU_MAX_GPUS, &n, &err)) {
        fprintf(stderr, "mig_probe: %s\n", err.msg);
        return 1;
    }
    if (only >= 0) {
        if (only >= n) {
            fprintf(stderr, "mig_probe: --gpu %d: the node has %d GPUs\n", only, n);
            return 2;
        }
        gpus[0] = gpus[only];
        n = 1;
    }
    if (strcmp(layout_text, "list") == 0) {
        char names[16][FX_MIG_NAME_MAX];
        unsigned slices[16];
        int np = fx_mig_profiles(nv, &gpus[0], names, slices, 16, &err);
        if (np < 0) {
            fprintf(stderr, "mig_probe: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < np; i++)
            printf("profile %s %u\n", names[i], slices[i]);
        fx_nvml_close(nv);
        return np > 0 ? 0 : 3;
    }
    char text[200];
    snprintf(text, sizeof(text), "%s", layout_text);
    if (strcmp(layout_text, "auto") == 0 && auto_layout(nv, &gpus[0], text, sizeof(text), &err)) {
        fprintf(stderr, "mig_probe: %s\n", err.msg);
        return 3;
    }
    printf("layout %s\n", text);
    struct fx_mig_layout layout;
    if (fx_mig_layout_parse(text, &layout, &err) ||
        fx_mig_setup(nv, &layout, gpus, &n, FLEXPU_MAX_GPUS, &err)) {
        fprintf(stderr, "mig_probe: %s\n", err.msg);
        return 1;
    }
    if (fx_nvml_check_health(nv, gpus, n) != 0)
        fprintf(stderr, "mig_probe: a device changed health\n");
    for (int i = 0; i < n; i++)
        printf("gpu %d %s %s %lld mig=%s gi=%d ci=%d minor=%d healthy=%d\n", gpus[i].index,
               gpus[i].uuid, gpus[i].model, (long long)gpus[i].mem_bytes,
               gpus[i].mig ? gpus[i].mig_profile : "-", gpus[i].mig ? gpus[i].mig_gi : -1,
               gpus[i].mig ? gpus[i].mig_ci : -1, gpus[i].minor, gpus[i].healthy);
    fx_nvml_close(nv);
    return 0;
}
