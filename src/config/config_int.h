/* SPDX-License-Identifier: MIT */
/* config/config_int.h: what config.c (table, values, precedence, dump, help) shares with
 * config_load.c (YAML files and command-line flags). Not a public header. */
#ifndef LIP_CONFIG_INT_H
#define LIP_CONFIG_INT_H

#include "config/config.h"

/* Where a value came from, in increasing precedence. */
enum cfg_source { CFG_SRC_DEFAULT = 0, CFG_SRC_ROLE, CFG_SRC_FILE, CFG_SRC_FLAG };

/* Hard limits that keep hostile input bounded (documented in docs/CONFIG.md). */
#define CFG_STR_MAX 4096        /* bytes in one string value */
#define CFG_LIST_MAX 64         /* items in one string list */
#define CFG_KEY_MAX 256         /* bytes in one dotted key name */
#define CFG_MODELS_MAX 100000   /* entries in the models map */
#define CFG_FILE_MAX (16u << 20) /* bytes in one config file */
#define CFG_WARN_LOG_MAX 20     /* warnings logged and kept per file; the rest are counted */

struct lip_config_priv {
    unsigned char *src; /* per table entry (model entries unused): enum cfg_source */
    unsigned *gen;      /* load generation that last set the key from a file */
    int *line;          /* line of that file where it was set */
    unsigned cur_gen;   /* generation of the file being loaded (0 = none) */
    unsigned last_gen;  /* last generation handed out */
    char **warnings;
    int nwarn;
    int load_warnings;  /* warnings raised by the file being loaded */
    int models_cap;
    int *mhash;         /* open-addressing index of models by id: -1 empty, else index */
    size_t mhash_cap;   /* power of two, > 2 x models_cap */
};

/* Where a value is being applied from, for precedence and for error messages. */
typedef struct cfg_ctx {
    int source;       /* enum cfg_source */
    const char *file; /* file name (CFG_SRC_FILE) */
    int line, col;    /* 1-based position in file */
    bool flag;        /* from a command-line flag: messages say "--key" */
} cfg_ctx;

/* What a key name refers to. */
typedef struct cfg_ref {
    const lip_config_key *k; /* NULL for legacy or unknown names */
    const char *legacy_why;  /* set when the name is a Go-layout key we read but do not use */
    char id[72];             /* model id for model keys ("" otherwise) */
    char canon[CFG_KEY_MAX]; /* name for messages: as written, model id normalised */
} cfg_ref;

/* Resolves a dotted name: 1 = a table key (ref->k set), 2 = a legacy key (ref->legacy_why set),
 * 0 = unknown, -1 = a models.<id>.<field> key whose id breaks the id rule. */
int cfg_resolve(const char *name, cfg_ref *ref);
/* True if name is a section: some key, alias or legacy key starts with "name.". */
bool cfg_is_section(const char *name);
/* Writes " (did you mean 'x'?)" into out when a key is close to name, else "". */
void cfg_suggest(const char *name, bool model_field, char *out, size_t n);

/* Applies a value to a resolved key. Exactly one of scalar (text; NULL for a YAML null when
 * is_null) or items/nitems (a YAML sequence) is used. Returns 0 or a LIP_E* code with the
 * message formatted from ctx. */
int cfg_apply(lip_config *cfg, const cfg_ref *ref, const char *scalar, bool is_null,
              const char *const *items, int nitems, bool is_list, const cfg_ctx *ctx,
              lip_err *err);
/* Marks a model id as defined by the current file (duplicate-id detection); 0 or LIP_EINVAL. */
int cfg_define_model(lip_config *cfg, const char *id, const cfg_ctx *ctx, lip_err *err);
/* Formats "<file>:<line>:<col>: key '<key>': <reason>" (or "--<key>: " for flags) into err. */
int cfg_fail(lip_err *err, int code, const cfg_ctx *ctx, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* true/yes/on/1 and false/no/off/0, any case: 0, or LIP_EINVAL. */
int cfg_parse_bool(const char *s, bool *out);
/* Records a warning (also logged at warn level). */
void cfg_warn(lip_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
