/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's inter-pod rules as kube-scheduler's InterPodAffinity and
 * PodTopologySpread plugins read them: the required and preferred terms of
 * spec.affinity.podAffinity and podAntiAffinity, and
 * spec.topologySpreadConstraints. Read here; the scheduler's model turns
 * them into node requirements and scored terms per decision
 * (docs/SCHEDULING.md, "Node filters and preferences"). */
#ifndef FX_KUBE_POD_RULES_H
#define FX_KUBE_POD_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "flexpu/error.h"

enum fx_sel_op { FX_SEL_IN, FX_SEL_NOT_IN, FX_SEL_EXISTS, FX_SEL_DOES_NOT_EXIST };

/* One requirement of a metav1.LabelSelector. */
struct fx_sel_req {
    char *key;
    enum fx_sel_op op;
    char **vals;
    int nvals;
};

/* A label selector: all its requirements hold. `nothing`: the selector
 * was absent, which selects no pod (labels.Nothing()); an empty one ({})
 * selects every pod. */
struct fx_label_sel {
    struct fx_sel_req *req;
    int nreq;
    bool nothing;
};

/* A required pod (anti-)affinity term. Namespaces: all_ns (an empty
 * namespaceSelector), else the listed ones, else (none listed) the
 * namespace of the pod that carries the term. */
struct fx_pod_term {
    char *topo_key;
    struct fx_label_sel sel;
    char **ns;
    int nns;
    bool all_ns;
};

/* A preferred (weighted) pod (anti-)affinity term: weight 1-100. */
struct fx_pod_wterm {
    struct fx_pod_term t;
    int weight;
};

/* A topology spread constraint: soft for whenUnsatisfiable ScheduleAnyway
 * (a score), else DoNotSchedule (a filter). */
struct fx_spread {
    char *topo_key;
    int max_skew;
    int min_domains;       /* 1 when absent */
    struct fx_label_sel sel;
    bool honor_affinity;   /* nodeAffinityPolicy: Honor (the default) */
    bool honor_taints;     /* nodeTaintsPolicy: Honor (default Ignore) */
    bool soft;
};

/* nhard: the spread constraints that are not soft; nblocking: the rules
 * that can keep a pod from a node (required terms, nhard). */
struct fx_pod_rules {
    struct fx_pod_term *aff, *anti;
    int naff, nanti;
    struct fx_pod_wterm *paff, *panti;
    int npaff, npanti;
    struct fx_spread *spread;
    int nspread, nhard, nblocking;
    uint64_t hash; /* of the JSON they were read from: an edit changes it */
};

/* Reads pod's inter-pod rules. *out is NULL when it has none (kube-
 * scheduler's cluster-level default constraints are not read: they are
 * no part of the pod). Malformed input gives FLEXPU_EINVAL
 * naming the field and the value; what flexpu does not evaluate (a
 * namespaceSelector with labels) too. matchLabelKeys and mismatchLabelKeys
 * are merged into the selector (key In / NotIn the pod's own value), as
 * the API server and kube-scheduler do. */
int fx_pod_rules_parse(json_t *pod, struct fx_pod_rules **out, struct flexpu_error *err);
void fx_pod_rules_free(struct fx_pod_rules *r);

/* A pod's labels packed as "key\0value\0key\0value\0\0": kept for every
 * pod the scheduler tracks, so a fraction of what a JSON object of them
 * costs (jansson's, about 2 KiB for five labels). *out is NULL when there
 * are none (labels NULL, not an object, or empty; members that are not
 * strings are left out, as the API server allows none). 0 or
 * FLEXPU_ENOMEM. */
int fx_labels_pack(json_t *labels, char **out);
/* The value of key in packed labels (NULL: none), and whether two packed
 * sets are the same (in the same order). */
const char *fx_labels_get(const char *packed, const char *key);
bool fx_labels_equal(const char *a, const char *b);

/* Whether packed labels (a pod's, fx_labels_pack; NULL: none) satisfy s. */
bool fx_label_sel_matches(const struct fx_label_sel *s, const char *labels);

/* Whether a pod in namespace ns with packed labels matches term t carried
 * by a pod of namespace own_ns. */
bool fx_pod_term_matches(const struct fx_pod_term *t, const char *own_ns, const char *ns,
                         const char *labels);

#endif
