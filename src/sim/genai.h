/* SPDX-License-Identifier: Apache-2.0 */
/* Per-pod GPU use series: the duty cycle and memory in use of production
 * GenAI serving pods (../shared/data/alibaba-genai-v2026), the busyness the
 * reuse replay (sim/reuse.h) gives its owners. docs/REUSE.md says how they
 * are read and used. */
#ifndef FX_SIM_GENAI_H
#define FX_SIM_GENAI_H

#include <stdio.h>

#include "flexpu/error.h"

struct fx_genai_pod {
    char id[48];
    float *duty; /* nsteps samples, fraction of the GPU's time busy, 0..1 */
    float *mem;  /* nsteps samples, fraction of the reference memory in use, 0..1 */
};

struct fx_genai {
    struct fx_genai_pod *pods;
    int npods;
    int nsteps;    /* samples per series, on one grid */
    double step_s; /* seconds between samples */
};

/* Reads the duty-cycle CSV (columns value, timestamp_anon, container_ip;
 * value in percent) and the memory CSV (timestamp_anon, value in bytes,
 * container_ip); f may be NULL to open the path. Samples are put on one grid
 * (the smallest step between timestamps), a missing sample takes the one
 * before it (or after, at the start), and memory becomes a fraction of
 * ref_mem_bytes (capped at 1). Pods with either series covering less than
 * half the grid are left out. Errors name the file, line, column and value;
 * on error u is empty. */
int fx_genai_read(struct fx_genai *u, const char *duty_path, FILE *duty_f, const char *mem_path,
                  FILE *mem_f, double ref_mem_bytes, struct flexpu_error *err);

/* Keeps one half of the pods (in the order of their ids: even positions for
 * part 0, "tune"; odd for part 1, "report"), so what is tuned on one half is
 * reported on the other. part < 0 keeps all. */
void fx_genai_keep_part(struct fx_genai *u, int part);

void fx_genai_free(struct fx_genai *u);

#endif
