/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler/borrow.h"

#include <string.h>

#define DAY_S  86400
#define HOUR_S 3600

static int32_t day_of(int64_t t)
{
    return (int32_t)(t >= 0 ? t / DAY_S : -1);
}

static int hour_of(int64_t t)
{
    return t >= 0 ? (int)(t % DAY_S / HOUR_S) : 0;
}

void fx_watch_init(struct fx_gpu_watch *w)
{
    memset(w, 0, sizeof(*w));
    w->owner_busy = w->owner_mean = -1;
    for (int h = 0; h < 24; h++) {
        w->hour_max[h] = w->prev_max[h] = -1;
        w->hour_day[h] = -1;
    }
}

/* The daily pattern: the hour's slot rolls over on a new day, keeping the
 * day before when it was the day before. */
static void pattern_add(struct fx_gpu_watch *w, int64_t ts, int mean)
{
    int h = hour_of(ts);
    int32_t d = day_of(ts);
    if (w->hour_day[h] != d) {
        w->prev_max[h] = w->hour_day[h] == d - 1 ? w->hour_max[h] : -1;
        w->hour_max[h] = -1;
        w->hour_day[h] = d;
    }
    if (mean > w->hour_max[h])
        w->hour_max[h] = (int16_t)mean;
}

/* Yesterday's highest mean in hour h, as seen from day d; -1: none. */
static int yesterday(const struct fx_gpu_watch *w, int h, int32_t d)
{
    if (w->hour_day[h] == d)
        return w->prev_max[h];
    if (w->hour_day[h] == d - 1)
        return w->hour_max[h];
    return -1;
}

void fx_watch_reading(struct fx_gpu_watch *w, int64_t ts, int owner_busy, int owner_mean,
                      int borrowed_milli)
{
    if (ts <= 0 || ts == w->last_ts)
        return;
    /* A timestamp that goes back (the node's clock stepped back, or the
     * last one was from its future) ends the run: it was measured on
     * another clock, and a run that began "later" than the readings that
     * follow would never last FX_RECLAIM_CONFIRM_S. */
    if (ts < w->last_ts)
        w->over_ts = 0;
    w->last_ts = ts;
    w->owner_busy = (int16_t)(owner_busy < 0 ? -1 : owner_busy > 1000 ? 1000 : owner_busy);
    w->owner_mean = (int16_t)(owner_mean < 0 ? -1 : owner_mean > 1000 ? 1000 : owner_mean);
    if (w->owner_mean >= 0)
        pattern_add(w, ts, w->owner_mean);
    /* Above capacity: the borrowers' shares (what they are guaranteed
     * beside the owners) no longer fit beside what the owners use. An
     * unknown reading ends the run: nothing is reclaimed on a guess. */
    bool over = borrowed_milli > 0 && w->owner_busy >= 0 &&
                w->owner_busy + borrowed_milli > 1000;
    if (!over)
        w->over_ts = 0;
    else if (!w->over_ts)
        w->over_ts = ts;
}

int fx_watch_predict(const struct fx_gpu_watch *w, int64_t now_s)
{
    if (w->owner_busy < 0)
        return -1;
    int p = w->owner_busy;
    int h = hour_of(now_s);
    int32_t d = day_of(now_s);
    int y0 = yesterday(w, h, d), y1 = yesterday(w, (h + 1) % 24, h == 23 ? d + 1 : d);
    if (y0 > p)
        p = y0;
    if (y1 > p)
        p = y1;
    return p;
}

bool fx_watch_admits(const struct fx_gpu_watch *w, int64_t now_s, int borrowed_milli,
                     int want_milli)
{
    int pred = fx_watch_predict(w, now_s);
    if (pred < 0 || w->over_ts)
        return false;
    if (w->reclaim_s && now_s - w->reclaim_s < FX_BORROW_COOLDOWN_S)
        return false;
    return pred + borrowed_milli + want_milli <= 1000 - FX_BORROW_HEADROOM;
}

bool fx_watch_reclaim_due(const struct fx_gpu_watch *w, int64_t now_s)
{
    return w->over_ts && w->last_ts - w->over_ts >= FX_RECLAIM_CONFIRM_S &&
           (!w->reclaim_s || now_s - w->reclaim_s >= FX_RECLAIM_GPU_GAP_S);
}

int fx_borrow_mem_parse(const char *s, enum fx_borrow_mem *out)
{
    if (strcmp(s, "unreserved") == 0)
        *out = FX_BORROW_MEM_UNRESERVED;
    else if (strcmp(s, "idle") == 0)
        *out = FX_BORROW_MEM_IDLE;
    else
        return -1;
    return 0;
}

const char *fx_borrow_mem_name(enum fx_borrow_mem m)
{
    return m == FX_BORROW_MEM_IDLE ? "idle" : "unreserved";
}

int fx_borrow_fit_milli(bool light, int cores)
{
    return light ? cores * 10 / 2 : cores * 10;
}
