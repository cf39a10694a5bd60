/* SPDX-License-Identifier: Apache-2.0 */
/* kubeconfig (libyaml) and in-cluster configuration. */
#include "kube/kube.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "flexpu/log.h"
#include "util/alloc.h"

#define FILE_MAX (4 << 20) /* a kubeconfig, a certificate or a token is far smaller */

static int read_file(const char *path, unsigned char **out, size_t *len, const char *field,
                     struct flexpu_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return flexpu_error_set(err, FLEXPU_EIO, "%s: cannot open '%s': %s", field, path,
                                strerror(errno));
    unsigned char *buf = fx_malloc(FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory reading '%s'", path);
    }
    size_t n = fread(buf, 1, FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > FILE_MAX) {
        fx_free(buf);
        return flexpu_error_set(err, FLEXPU_EIO, "%s: '%s' %s", field, path,
                                bad ? "could not be read" : "is larger than 4 MiB");
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* Decodes base64 (newlines allowed) with OpenSSL's decoder. */
static int b64_decode(const char *in, const char *field, unsigned char **out, size_t *len,
                      struct flexpu_error *err)
{
    size_t n = strlen(in);
    unsigned char *buf = fx_malloc(n / 4 * 3 + 4);
    if (!buf)
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory decoding %s", field);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int a = 0, b = 0;
    int ok = ctx && n < (size_t)1 << 30;
    if (ok) {
        EVP_DecodeInit(ctx);
        ok = EVP_DecodeUpdate(ctx, buf, &a, (const unsigned char *)in, (int)n) >= 0 &&
             EVP_DecodeFinal(ctx, buf + a, &b) == 1;
    }
    EVP_ENCODE_CTX_free(ctx);
    if (!ok || a + b == 0) {
        fx_free(buf);
        return flexpu_error_field(err, FLEXPU_EPARSE, field, in, n, "not valid base64");
    }
    *out = buf;
    *len = (size_t)(a + b);
    return 0;
}

static char *strdup_or(const char *s, struct flexpu_error *err, int *rc)
{
    char *d = fx_strdup(s);
    if (!d)
        *rc = flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory");
    return d;
}

void kube_config_free(struct kube_config *c)
{
    if (!c)
        return;
    fx_free(c->server);
    fx_free(c->token);
    fx_free(c->token_file);
    fx_free(c->ca);
    fx_free(c->cert);
    fx_free(c->key);
    fx_free(c->namespace);
    memset(c, 0, sizeof(*c));
}

/* ---- YAML document navigation ---- */

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Finds the entry of list `section` whose name is `name` and returns its
 * `inner` mapping (clusters[].cluster, users[].user, contexts[].context). */
static yaml_node_t *named(yaml_document_t *d, yaml_node_t *root, const char *section,
                          const char *inner, const char *name)
{
    yaml_node_t *list = map_get(d, root, section);
    if (!list || list->type != YAML_SEQUENCE_NODE)
        return NULL;
    for (yaml_node_item_t *i = list->data.sequence.items.start; i < list->data.sequence.items.top;
         i++) {
        yaml_node_t *e = yaml_document_get_node(d, *i);
        const char *n = scalar(map_get(d, e, "name"));
        if (n && strcmp(n, name) == 0)
            return map_get(d, e, inner);
    }
    return NULL;
}

static void join_path(char *out, size_t len, const char *dir, const char *p)
{
    if (p[0] == '/' || !dir || !*dir)
        snprintf(out, len, "%s", p);
    else
        snprintf(out, len, "%s/%s", dir, p);
}

/* A PEM either inline (`data_key`, base64) or in a file (`file_key`). */
static int pem(yaml_document_t *d, yaml_node_t *m, const char *data_key, const char *file_key,
               const char *dir, unsigned char **out, size_t *len, struct flexpu_error *err)
{
    const char *data = scalar(map_get(d, m, data_key));
    if (data)
        return b64_decode(data, data_key, out, len, err);
    const char *file = scalar(map_get(d, m, file_key));
    if (!file)
        return 0;
    char path[4096];
    join_path(path, sizeof(path), dir, file);
    return read_file(path, out, len, file_key, err);
}

/* Whether a URL's host is this machine (127.0.0.0/8, ::1, localhost). */
static bool loopback_url(const char *url)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    if (strncmp(host, "[::1]", 5) == 0)
        return true;
    size_t n = strcspn(host, ":/");
    return (n == 9 && strncmp(host, "localhost", 9) == 0) || strncmp(host, "127.", 4) == 0;
}

/* Settings that send the token or client key where anyone on the path can
 * read or impersonate the server: allowed (test clusters use them) but never
 * silently. Loopback http is the test control plane's case; it is still
 * said, once per configuration loaded. */
static void warn_insecure(const struct kube_config *c)
{
    if (strncmp(c->server, "http://", 7) == 0)
        FX_WARN("kube",
                loopback_url(c->server)
                    ? "API server over plain http on loopback: not encrypted, for tests only"
                    : "API server over plain http: requests and credentials travel unencrypted",
                "server=%s setting=clusters[].cluster.server", c->server);
    if (c->insecure)
        FX_WARN("kube",
                "insecure-skip-tls-verify is set: the API server's certificate is not checked, "
                "so anyone in the path can pose as it",
                "server=%s setting=clusters[].cluster.insecure-skip-tls-verify", c->server);
}

int kube_config_parse(const char *text, size_t len, const char *dir, const char *context,
                      struct kube_config *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return flexpu_error_set(err, FLEXPU_ENOMEM, "out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = flexpu_error_set(err, FLEXPU_EPARSE, "kubeconfig: line %zu column %zu: %s",
                                  parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                                  parser.problem ? parser.problem : "malformed YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_parser_delete(&parser);

    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = flexpu_error_set(err, FLEXPU_EPARSE, "kubeconfig: the document is not a mapping");
        goto out;
    }
    const char *ctxname = context ? context : scalar(map_get(&doc, root, "current-context"));
    if (!ctxname || !*ctxname) {
        rc = flexpu_error_set(err, FLEXPU_EINVAL,
                              "kubeconfig: field 'current-context' is missing or empty");
        goto out;
    }
    yaml_node_t *ctx = named(&doc, root, "contexts", "context", ctxname);
    if (!ctx) {
        rc = flexpu_error_field(err, FLEXPU_ENOENT, "contexts[].name", ctxname, strlen(ctxname),
                                "no such context");
        goto out;
    }
    const char *cluster_name = scalar(map_get(&doc, ctx, "cluster"));
    const char *user_name = scalar(map_get(&doc, ctx, "user"));
    const char *ns = scalar(map_get(&doc, ctx, "namespace"));
    yaml_node_t *cluster = cluster_name ? named(&doc, root, "clusters", "cluster", cluster_name)
                                        : NULL;
    if (!cluster) {
        const char *v = cluster_name ? cluster_name : "";
        rc = flexpu_error_field(err, FLEXPU_ENOENT, "contexts[].context.cluster", v, strlen(v),
                                "no such cluster");
        goto out;
    }
    const char *server = scalar(map_get(&doc, cluster, "server"));
    if (!server || (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)) {
        const char *v = server ? server : "";
        rc = flexpu_error_field(err, FLEXPU_EINVAL, "clusters[].cluster.server", v, strlen(v),
                                "must be an http:// or https:// URL");
        goto out;
    }
    out->server = strdup_or(server, err, &rc);
    if (rc)
        goto out;
    size_t sl = strlen(out->server);
    while (sl > 0 && out->server[sl - 1] == '/')
        out->server[--sl] = 0;
    const char *insecure = scalar(map_get(&doc, cluster, "insecure-skip-tls-verify"));
    out->insecure = insecure && strcmp(insecure, "true") == 0;
    rc = pem(&doc, cluster, "certificate-authority-data", "certificate-authority", dir, &out->ca,
             &out->ca_len, err);
    if (rc)
        goto out;

    yaml_node_t *user = user_name ? named(&doc, root, "users", "user", user_name) : NULL;
    if (user_name && !user) {
        rc = flexpu_error_field(err, FLEXPU_ENOENT, "contexts[].context.user", user_name,
                                strlen(user_name), "no such user");
        goto out;
    }
    if (user) {
        if ((rc = pem(&doc, user, "client-certificate-data", "client-certificate", dir, &out->cert,
                      &out->cert_len, err)) ||
            (rc = pem(&doc, user, "client-key-data", "client-key", dir, &out->key, &out->key_len,
                      err)))
            goto out;
        if (!out->cert != !out->key) {
            rc = flexpu_error_set(err, FLEXPU_EINVAL,
                                  "kubeconfig: user '%s' has a client certificate without a key "
                                  "or a key without a certificate",
                                  user_name);
            goto out;
        }
        const char *token = scalar(map_get(&doc, user, "token"));
        const char *token_file = scalar(map_get(&doc, user, "tokenFile"));
        if (token)
            out->token = strdup_or(token, err, &rc);
        else if (token_file) {
            char path[4096];
            join_path(path, sizeof(path), dir, token_file);
            out->token_file = strdup_or(path, err, &rc);
        }
        if (rc)
            goto out;
        if (map_get(&doc, user, "exec") || map_get(&doc, user, "auth-provider")) {
            rc = flexpu_error_set(err, FLEXPU_EINVAL,
                                  "kubeconfig: user '%s' uses an exec or auth-provider plugin, "
                                  "which flexpu does not run; use a token or client certificate",
                                  user_name);
            goto out;
        }
    }
    out->namespace = strdup_or(ns && *ns ? ns : "default", err, &rc);
    if (rc == 0)
        warn_insecure(out);
out:
    yaml_document_delete(&doc);
    if (rc)
        kube_config_free(out);
    return rc;
}

int kube_config_in_cluster(const char *root, struct kube_config *out, struct flexpu_error *err)
{
    memset(out, 0, sizeof(*out));
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return flexpu_error_set(err, FLEXPU_ENOENT,
                                "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
    char buf[512];
    /* An IPv6 service address needs brackets in a URL. */
    snprintf(buf, sizeof(buf), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
             port);
    int rc = 0;
    out->server = strdup_or(buf, err, &rc);
    char path[4096];
    snprintf(path, sizeof(path), "%s/token", root);
    if (!rc)
        out->token_file = strdup_or(path, err, &rc);
    snprintf(path, sizeof(path), "%s/ca.crt", root);
    if (!rc)
        rc = read_file(path, &out->ca, &out->ca_len, "service-account ca.crt", err);
    unsigned char *ns = NULL;
    size_t nslen = 0;
    snprintf(path, sizeof(path), "%s/namespace", root);
    if (!rc && read_file(path, &ns, &nslen, "namespace", NULL) == 0) {
        while (nslen > 0 && (ns[nslen - 1] == '\n' || ns[nslen - 1] == ' '))
            ns[--nslen] = 0;
        out->namespace = (char *)ns;
    } else if (!rc) {
        out->namespace = strdup_or("default", err, &rc);
    }
    if (rc)
        kube_config_free(out);
    return rc;
}

int kube_config_load(const char *path, const char *context, struct kube_config *out,
                     struct flexpu_error *err)
{
    char buf[4096];
    if (!path) {
        const char *env = getenv("KUBECONFIG");
        if (env && *env) {
            snprintf(buf, sizeof(buf), "%s", env);
            char *colon = strchr(buf, ':');
            if (colon)
                *colon = 0;
            path = buf;
        } else if (getenv("KUBERNETES_SERVICE_HOST")) {
            return kube_config_in_cluster("/var/run/secrets/kubernetes.io/serviceaccount", out,
                                          err);
        } else {
            const char *home = getenv("HOME");
            snprintf(buf, sizeof(buf), "%s/.kube/config", home ? home : "");
            path = buf;
        }
    }
    unsigned char *text;
    size_t len;
    int rc = read_file(path, &text, &len, "kubeconfig", err);
    if (rc)
        return rc;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof(dir), ".");
    rc = kube_config_parse((const char *)text, len, dir, context, out, err);
    fx_free(text);
    if (rc)
        flexpu_error_prefix(err, "%s", path);
    return rc;
}
