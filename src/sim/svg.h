/* SPDX-License-Identifier: Apache-2.0 */
/* Line plots written directly as SVG (no plotting dependency). */
#ifndef FX_SIM_SVG_H
#define FX_SIM_SVG_H

#include "flexpu/error.h"

struct fx_series {
    const char *name;
    const double *x, *y;
    int n;
};

/* Writes one chart with a line per series and a legend. The y range is
 * [ymin, ymax]; the x range spans the data. */
int fx_svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
                double ymin, double ymax, const struct fx_series *s, int ns,
                struct flexpu_error *err);

#endif
