/* SPDX-License-Identifier: MIT */
/* config/config_load.c: the two ways settings arrive from outside: YAML files (read with
 * libyaml's document loader, so every key and value keeps its line and column for messages) and
 * command-line flags. Both resolve key names and hand values to cfg_apply in config.c, which
 * owns parsing, range checks and precedence. Files are hostile input: nesting depth, node
 * count, key length and file size are bounded, and NUL bytes, aliases to odd places, several
 * documents and non-string keys are rejected with a message rather than trusted. */
#include "config/config_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CFG_DEPTH_MAX 8        /* sections nest 1 deep in practice; flat and nested forms mix */
#define CFG_NODES_MAX 2000000L /* nodes visited per file, which also bounds alias expansion */

typedef struct loader {
    lip_config *cfg;
    yaml_document_t *doc;
    const char *file;
    lip_err *err;
    long budget;
} loader;

static cfg_ctx node_ctx(const loader *L, const yaml_node_t *n)
{
    cfg_ctx c = {.source = CFG_SRC_FILE, .file = L->file};
    c.line = (int)LIP_MIN(n->start_mark.line + 1, (size_t)INT32_MAX);
    c.col = (int)LIP_MIN(n->start_mark.column + 1, (size_t)INT32_MAX);
    return c;
}

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "scalar";
    case YAML_SEQUENCE_NODE: return "list";
    case YAML_MAPPING_NODE: return "mapping";
    default: return "empty node";
    }
}

/* A YAML null: an empty or ~/null plain scalar (a quoted "" is an empty string). */
static bool is_null_node(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* The text of a scalar node; rejects embedded NUL bytes (a "\0" escape), which C strings
 * would silently cut. */
static int scalar_text(loader *L, const yaml_node_t *n, const char *key, const char **out)
{
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        cfg_ctx c = node_ctx(L, n);
        return cfg_fail(L->err, LIP_EINVAL, &c, key, "value contains a NUL byte");
    }
    *out = s;
    return 0;
}

static yaml_node_t *node_at(loader *L, int index)
{
    return yaml_document_get_node(L->doc, index);
}

/* Applies one value node (scalar or list of scalars) to a resolved key. */
static int apply_node(loader *L, const cfg_ref *ref, yaml_node_t *vn)
{
    cfg_ctx c = node_ctx(L, vn);
    if (vn->type == YAML_SCALAR_NODE) {
        const char *s = "";
        int rc = scalar_text(L, vn, ref->canon, &s);
        if (rc) return rc;
        return cfg_apply(L->cfg, ref, s, is_null_node(vn), NULL, 0, false, &c, L->err);
    }
    if (vn->type == YAML_SEQUENCE_NODE) {
        const char *items[CFG_LIST_MAX];
        int n = 0;
        for (yaml_node_item_t *it = vn->data.sequence.items.start;
             it < vn->data.sequence.items.top; it++) {
            yaml_node_t *in = node_at(L, *it);
            if (!in) return cfg_fail(L->err, LIP_EFORMAT, &c, ref->canon, "broken list item");
            cfg_ctx ic = node_ctx(L, in);
            if (in->type != YAML_SCALAR_NODE || is_null_node(in))
                return cfg_fail(L->err, LIP_EINVAL, &ic, ref->canon,
                                "list items must be non-empty strings, got a %s",
                                is_null_node(in) ? "null" : kind_name(in));
            if (n >= CFG_LIST_MAX)
                return cfg_fail(L->err, LIP_EINVAL, &ic, ref->canon, "more than %d items",
                                CFG_LIST_MAX);
            int rc = scalar_text(L, in, ref->canon, &items[n]);
            if (rc) return rc;
            n++;
        }
        return cfg_apply(L->cfg, ref, NULL, false, items, n, true, &c, L->err);
    }
    return cfg_fail(L->err, LIP_EINVAL, &c, ref->canon, "expected a value, got a %s",
                    kind_name(vn));
}

static int spend(loader *L, const yaml_node_t *n)
{
    if (--L->budget >= 0) return 0;
    cfg_ctx c = node_ctx(L, n);
    return cfg_fail(L->err, LIP_EINVAL, &c, "(document)", "more than %ld nodes", CFG_NODES_MAX);
}

/* A Go-layout key we do not use. A file repeating one per model (memory_estimate_mb for 11,000
 * models) must not flood the log: the first CFG_WARN_LOG_MAX are listed, the rest counted. */
static void file_warn(loader *L, int line, const char *key, const char *why)
{
    if (++L->cfg->priv_->load_warnings <= CFG_WARN_LOG_MAX)
        cfg_warn(L->cfg, "%s:%d: key '%s' is not used (%s); ignored", L->file, line, key, why);
}

/* models: { <id>: { <field>: value, ... }, ... } (DATA.md's Go layout). */
static int walk_models(loader *L, yaml_node_t *vn)
{
    cfg_ctx c = node_ctx(L, vn);
    if (is_null_node(vn)) return 0;
    if (vn->type != YAML_MAPPING_NODE)
        return cfg_fail(L->err, LIP_EINVAL, &c, "models",
                        "expected a mapping of model ids to their settings, got a %s",
                        kind_name(vn));
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node_at(L, p->key), *mn = node_at(L, p->value);
        if (!kn || !mn) return cfg_fail(L->err, LIP_EFORMAT, &c, "models", "broken mapping");
        int rc = spend(L, kn);
        if (rc) return rc;
        cfg_ctx kc = node_ctx(L, kn);
        const char *id = "";
        if (kn->type != YAML_SCALAR_NODE)
            return cfg_fail(L->err, LIP_EINVAL, &kc, "models",
                            "model ids must be strings, got a %s", kind_name(kn));
        if ((rc = scalar_text(L, kn, "models", &id))) return rc;
        if ((rc = cfg_define_model(L->cfg, id, &kc, L->err))) return rc;
        if (is_null_node(mn)) continue; /* "sanders:" alone: a model with default settings */
        char mkey[CFG_KEY_MAX];
        snprintf(mkey, sizeof mkey, "models.%s", id);
        if (mn->type != YAML_MAPPING_NODE) {
            cfg_ctx mc = node_ctx(L, mn);
            return cfg_fail(L->err, LIP_EINVAL, &mc, mkey,
                            "expected a mapping of model settings, got a %s", kind_name(mn));
        }
        for (yaml_node_pair_t *q = mn->data.mapping.pairs.start;
             q < mn->data.mapping.pairs.top; q++) {
            yaml_node_t *fk = node_at(L, q->key), *fv = node_at(L, q->value);
            if (!fk || !fv) return cfg_fail(L->err, LIP_EFORMAT, &c, mkey, "broken mapping");
            if ((rc = spend(L, fk))) return rc;
            cfg_ctx fc = node_ctx(L, fk);
            const char *field = "";
            if (fk->type != YAML_SCALAR_NODE)
                return cfg_fail(L->err, LIP_EINVAL, &fc, mkey, "keys must be strings, got a %s",
                                kind_name(fk));
            if ((rc = scalar_text(L, fk, mkey, &field))) return rc;
            char full[CFG_KEY_MAX];
            if ((size_t)snprintf(full, sizeof full, "%s.%s", mkey, field) >= sizeof full)
                return cfg_fail(L->err, LIP_EINVAL, &fc, mkey, "key name longer than %d bytes",
                                CFG_KEY_MAX - 1);
            cfg_ref ref;
            int r = strchr(field, '.') ? 0 : cfg_resolve(full, &ref);
            if (r == 1) {
                if ((rc = apply_node(L, &ref, fv))) return rc;
            } else if (r == 2) {
                file_warn(L, fc.line, full, ref.legacy_why);
            } else {
                char sug[96];
                cfg_suggest(field, true, sug, sizeof sug);
                return cfg_fail(L->err, LIP_EINVAL, &fc, full, "unknown model setting%s", sug);
            }
        }
    }
    return 0;
}

/* One mapping at section path prefix ("" for the top level). Keys may be nested sections or
 * dotted names ("server.port: 1" at the top level is the same as server: {port: 1}). */
static int walk_mapping(loader *L, yaml_node_t *map, const char *prefix, int depth)
{
    cfg_ctx mc = node_ctx(L, map);
    if (depth > CFG_DEPTH_MAX)
        return cfg_fail(L->err, LIP_EINVAL, &mc, prefix, "nested more than %d levels",
                        CFG_DEPTH_MAX);
    struct seen {
        const char *name;
        int line;
    } seen[32];
    int nseen = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node_at(L, p->key), *vn = node_at(L, p->value);
        const char *where = *prefix ? prefix : "(top level)";
        if (!kn || !vn) return cfg_fail(L->err, LIP_EFORMAT, &mc, where, "broken mapping");
        int rc = spend(L, kn);
        if (rc) return rc;
        cfg_ctx kc = node_ctx(L, kn);
        const char *key = "";
        if (kn->type != YAML_SCALAR_NODE)
            return cfg_fail(L->err, LIP_EINVAL, &kc, where, "keys must be strings, got a %s",
                            kind_name(kn));
        if ((rc = scalar_text(L, kn, where, &key))) return rc;
        if (!*key) return cfg_fail(L->err, LIP_EINVAL, &kc, where, "empty key");
        char full[CFG_KEY_MAX];
        if ((size_t)snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", key) >=
            sizeof full)
            return cfg_fail(L->err, LIP_EINVAL, &kc, where, "key name longer than %d bytes",
                            CFG_KEY_MAX - 1);
        /* The same section twice in one mapping is a mistake whichever half was meant (a
         * leaf key twice is caught by cfg_apply, for nested and dotted forms alike). Only
         * sections are tracked, and they are few, so this stays linear for huge mappings. */
        bool section = !strcmp(full, "models") ||
                       (vn->type == YAML_MAPPING_NODE && cfg_is_section(full));
        if (section) {
            for (int j = 0; j < nseen; j++)
                if (!strcmp(seen[j].name, key))
                    return cfg_fail(L->err, LIP_EINVAL, &kc, full,
                                    "duplicate key (first at line %d)", seen[j].line);
            if (nseen < (int)LIP_ARRAY_LEN(seen)) seen[nseen++] = (struct seen){key, kc.line};
        }
        if (!strcmp(full, "models")) {
            if ((rc = walk_models(L, vn))) return rc;
            continue;
        }
        cfg_ref ref;
        int r = cfg_resolve(full, &ref);
        if (r == 1) {
            rc = apply_node(L, &ref, vn);
        } else if (r == 2) {
            file_warn(L, kc.line, full, ref.legacy_why);
        } else if (r == -1) {
            rc = cfg_fail(L->err, LIP_EINVAL, &kc, full,
                          "'%s' is not a valid model id (1-64 characters from [A-Za-z0-9_.-], "
                          "not '.' or '..')",
                          ref.id);
        } else if (cfg_is_section(full)) {
            if (vn->type == YAML_MAPPING_NODE)
                rc = walk_mapping(L, vn, full, depth + 1);
            else if (!is_null_node(vn)) {
                cfg_ctx vc = node_ctx(L, vn);
                rc = cfg_fail(L->err, LIP_EINVAL, &vc, full,
                              "is a section: expected a mapping of its keys, got a %s",
                              kind_name(vn));
            }
        } else {
            char sug[96];
            cfg_suggest(full, false, sug, sizeof sug);
            rc = cfg_fail(L->err, LIP_EINVAL, &kc, full, "unknown key%s", sug);
        }
        if (rc) return rc;
    }
    return 0;
}

static int yaml_problem(lip_err *err, const yaml_parser_t *ps, const char *name)
{
    if (ps->error == YAML_MEMORY_ERROR)
        return lip_err_set(err, LIP_ENOMEM, "%s: out of memory parsing YAML", name);
    return lip_err_set(err, LIP_EFORMAT, "%s:%zu:%zu: malformed YAML: %s%s%s", name,
                       ps->problem_mark.line + 1, ps->problem_mark.column + 1,
                       ps->problem ? ps->problem : "parse error", ps->context ? " " : "",
                       ps->context ? ps->context : "");
}

/* libyaml's scanner spends time proportional to the flow nesting depth on every token, so
 * "[[[[..." costs quadratic time (100k levels: ~25 s). A first pass over the events stops at
 * CFG_FLOW_MAX levels, after a few hundred tokens, before the document loader sees the text. */
#define CFG_FLOW_MAX 32
static int prescan(const char *yaml, size_t len, const char *name, lip_err *err)
{
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps))
        return lip_err_set(err, LIP_ENOMEM, "%s: out of memory starting the YAML parser", name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)yaml, len);
    int rc = 0, depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = yaml_problem(err, &ps, name);
            break;
        }
        yaml_event_type_t t = ev.type;
        yaml_mark_t mk = ev.start_mark;
        yaml_event_delete(&ev);
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > CFG_FLOW_MAX) {
                rc = lip_err_set(err, LIP_EINVAL,
                                 "%s:%zu:%zu: nested more than %d levels deep", name,
                                 mk.line + 1, mk.column + 1, CFG_FLOW_MAX);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (t == YAML_STREAM_END_EVENT) {
            break;
        }
    }
    yaml_parser_delete(&ps);
    return rc;
}

int lip_config_load_string(lip_config *cfg, const char *yaml, size_t len, const char *name,
                           lip_err *err)
{
    if (!cfg || (!yaml && len))
        return lip_err_set(err, LIP_EINVAL, "lip_config_load_string: NULL argument");
    if (!name) name = "<string>";
    if (len > CFG_FILE_MAX)
        return lip_err_set(err, LIP_EINVAL, "%s: %zu bytes, more than the limit of %u", name,
                           len, CFG_FILE_MAX);
    int rc = prescan(yaml ? yaml : "", len, name, err);
    if (rc) return rc;
    yaml_parser_t ps;
    yaml_document_t doc, doc2;
    if (!yaml_parser_initialize(&ps))
        return lip_err_set(err, LIP_ENOMEM, "%s: out of memory starting the YAML parser", name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)(yaml ? yaml : ""), len);
    if (!yaml_parser_load(&ps, &doc)) {
        rc = yaml_problem(err, &ps, name);
        yaml_parser_delete(&ps);
        return rc;
    }
    /* A second document would be silently ignored by a one-document reader: refuse it, before
     * anything of the first is applied. */
    if (!yaml_parser_load(&ps, &doc2)) {
        rc = yaml_problem(err, &ps, name);
    } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
        if (r2)
            rc = lip_err_set(err, LIP_EFORMAT,
                             "%s:%zu:%zu: more than one YAML document (expected one)", name,
                             r2->start_mark.line + 1, r2->start_mark.column + 1);
        yaml_document_delete(&doc2);
    }
    if (!rc) {
        struct lip_config_priv *p = cfg->priv_;
        if (++p->last_gen == 0) p->last_gen = 1;
        p->cur_gen = p->last_gen;
        p->load_warnings = 0;
        loader L = {.cfg = cfg, .doc = &doc, .file = name, .err = err, .budget = CFG_NODES_MAX};
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_MAPPING_NODE) {
            rc = walk_mapping(&L, root, "", 0);
        } else if (root && !is_null_node(root)) {
            cfg_ctx c = node_ctx(&L, root);
            rc = cfg_fail(err, LIP_EINVAL, &c, "(top level)",
                          "expected a mapping of keys, got a %s", kind_name(root));
        }
        p->cur_gen = 0; /* later lip_config_set calls are not part of this file */
        if (p->load_warnings > CFG_WARN_LOG_MAX)
            cfg_warn(cfg, "%s: %d more keys that are not used were ignored (not listed)", name,
                     p->load_warnings - CFG_WARN_LOG_MAX);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return rc;
}

int lip_config_load_file(lip_config *cfg, const char *path, lip_err *err)
{
    if (!cfg || !path) return lip_err_set(err, LIP_EINVAL, "lip_config_load_file: NULL argument");
    uint8_t *data;
    size_t len;
    int rc = lip_file_read(path, CFG_FILE_MAX, &data, &len, err);
    if (rc) return lip_err_prefix(err, "config file");
    rc = lip_config_load_string(cfg, (const char *)data, len, path, err);
    lip_free(data);
    return rc;
}

/* ---- flags ---------------------------------------------------------------------------------- */
/* True if name looks meant for us: a dotted name whose first part is a config section. */
static bool looks_like_key(const char *name)
{
    const char *dot = strchr(name, '.');
    if (!dot) return false;
    char sec[CFG_KEY_MAX];
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - name), name);
    return !strcmp(sec, "models") || cfg_is_section(sec);
}

int lip_config_apply_args(lip_config *cfg, int *argc, char **argv, lip_err *err)
{
    if (!cfg || !argc || !argv)
        return lip_err_set(err, LIP_EINVAL, "lip_config_apply_args: NULL argument");
    int n = *argc, out = 1, i = 1;
    cfg_ctx fc = {.source = CFG_SRC_FLAG, .flag = true};
    for (; i < n; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--")) break;
        if (strncmp(a, "--", 2) != 0) { /* checked first: a may be shorter than 2 bytes */
            argv[out++] = a;
            continue;
        }
        const char *body = a + 2, *eq = strchr(body, '=');
        size_t nl = eq ? (size_t)(eq - body) : strlen(body);
        char name[CFG_KEY_MAX];
        if (nl == 0 || nl >= sizeof name) {
            argv[out++] = a;
            continue;
        }
        memcpy(name, body, nl);
        name[nl] = 0;
        const char *key = name, *val = eq ? eq + 1 : NULL;
        if (!strcmp(name, "role")) key = "server.role"; /* shorthands for the common two */
        if (!strcmp(name, "port")) key = "server.port";
        bool file = !strcmp(name, "config");
        cfg_ref ref;
        int r = file ? 0 : cfg_resolve(key, &ref);
        if (!file && r == 0) {
            if (looks_like_key(key)) {
                char sug[96];
                cfg_suggest(key, false, sug, sizeof sug);
                return cfg_fail(err, LIP_EINVAL, &fc, key, "unknown key%s", sug);
            }
            argv[out++] = a; /* the command's own flag */
            continue;
        }
        if (!val) {
            bool b;
            if (r == 1 && ref.k->type == LIP_CFG_BOOL) {
                /* A bare boolean flag means true; "--auto_load false" also works. */
                val = i + 1 < n && cfg_parse_bool(argv[i + 1], &b) == 0 ? argv[++i] : "true";
            } else if (i + 1 < n) {
                val = argv[++i];
            } else {
                return cfg_fail(err, LIP_EINVAL, &fc, file ? "config" : key,
                                "missing value (the last argument)");
            }
        }
        int rc = 0;
        if (file)
            rc = lip_config_load_file(cfg, val, err);
        else if (r == 2)
            cfg_warn(cfg, "--%s is not used (%s); ignored", key, ref.legacy_why);
        else if (r == -1)
            rc = cfg_fail(err, LIP_EINVAL, &fc, key,
                          "'%s' is not a valid model id (1-64 characters from [A-Za-z0-9_.-], "
                          "not '.' or '..')",
                          ref.id);
        else
            rc = cfg_apply(cfg, &ref, val, false, NULL, 0, false, &fc, err);
        if (rc) return rc;
    }
    for (; i < n; i++) argv[out++] = argv[i];
    argv[out] = NULL;
    *argc = out;
    return 0;
}
