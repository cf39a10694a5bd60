/* SPDX-License-Identifier: Apache-2.0 */
#include "sim/svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { W = 900, H = 560, ML = 70, MR = 190, MT = 50, MB = 60 };

static const char *const colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void text_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

/* A "nice" tick step giving about n ticks over span. */
static double tick_step(double span, int n)
{
    double raw = span / n, mag = pow(10, floor(log10(raw)));
    double r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

int fx_svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
                double ymin, double ymax, const struct fx_series *s, int ns,
                struct flexpu_error *err)
{
    double xmin = INFINITY, xmax = -INFINITY;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < s[i].n; j++) {
            xmin = fmin(xmin, s[i].x[j]);
            xmax = fmax(xmax, s[i].x[j]);
        }
    if (!(xmax > xmin) || !(ymax > ymin))
        return flexpu_error_set(err, FLEXPU_EINVAL, "plot %s: empty data range", path);
    FILE *f = fopen(path, "w");
    if (!f)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot write: %s", path, strerror(errno));
    const double pw = W - ML - MR, ph = H - MT - MB;
#define PX(x) (ML + ((x) - xmin) / (xmax - xmin) * pw)
#define PY(y) (MT + ph - (fmin(fmax((y), ymin), ymax) - ymin) / (ymax - ymin) * ph)
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%%\" "
               "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\">", ML);
    text_escaped(f, title);
    fputs("</text>\n", f);
    double xs = tick_step(xmax - xmin, 10), ys = tick_step(ymax - ymin, 8);
    for (double x = ceil(xmin / xs) * xs; x <= xmax + 1e-9; x += xs)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                PX(x), MT, PX(x), MT + ph, PX(x), MT + ph + 18, x);
    for (double y = ceil(ymin / ys) * ys; y <= ymax + 1e-9; y += ys)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                ML, PY(y), ML + pw, PY(y), ML - 6, PY(y) + 4, y);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
               "stroke=\"#333\"/>\n",
            ML, MT, pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", ML + pw / 2, H - 15);
    text_escaped(f, xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(18,%.1f) rotate(-90)\" "
               "text-anchor=\"middle\">",
            MT + ph / 2);
    text_escaped(f, ylabel);
    fputs("</text>\n", f);
    for (int i = 0; i < ns; i++) {
        const char *col = colors[i % (int)(sizeof(colors) / sizeof(colors[0]))];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int j = 0; j < s[i].n; j++)
            fprintf(f, "%.1f,%.1f ", PX(s[i].x[j]), PY(s[i].y[j]));
        fputs("\"/>\n", f);
        double ly = MT + 10 + i * 22.0;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"3\"/><text x=\"%.0f\" y=\"%.1f\">",
                ML + pw + 15, ly, ML + pw + 40, ly, col, ML + pw + 46, ly + 4);
        text_escaped(f, s[i].name);
        fputs("</text>\n", f);
    }
#undef PX
#undef PY
    fputs("</svg>\n", f);
    if (fclose(f) != 0)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
