/* SPDX-License-Identifier: MIT */
/* auth/auth.c: the key store (JSON keys file, hashed secrets, reload), the per-RPC access policy,
 * the per-key limits and the audit log, tied to the rpc server as its guard (auth.h says what
 * is enforced where).
 *
 * Key sets are immutable and reference-counted: a reload builds a new set and swaps it in, and
 * each call holds the set it was authenticated with until it ends, so a reload never frees a
 * key under a running call. Limiter state (token bucket, calls in progress) lives apart, one
 * per key id for the life of the lip_auth, so a reload neither refills a bucket nor forgets
 * running calls. */
#include "auth/auth.h"

#include <cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define KEYS_FILE_MAX (32u << 20) /* MAX_KEYS keys of about 200 bytes each, with room */
#define MAX_KEYS 100000
#define MAX_AVATARS_PER_KEY 10000
#define CONCURRENCY_RETRY_MS 250.0 /* hint when a key has too many calls in progress */

/* ---- key store ----------------------------------------------------------------------------- */

typedef struct limiter {
    char id[LIP_AUTH_ID_MAX + 1];
    pthread_mutex_t mu;
    lip_auth_bucket b;
    bool bucket_set;
    int inflight;
    struct limiter *next;
} limiter;

typedef struct key_ent {
    char id[LIP_AUTH_ID_MAX + 1];
    unsigned char hash[32];
    int role;
    bool all;
    char **avatars; /* a handful per key: searched linearly */
    int navatars;
    double fps, burst; /* fps 0 = unlimited */
    int max_conc;      /* 0 = unlimited */
    int index;         /* position in the file, for messages */
    limiter *lim;
} key_ent;

typedef struct keyset {
    atomic_int refs;
    key_ent *keys; /* sorted by hash (binary search per call) */
    int n;
} keyset;

struct lip_auth {
    lip_auth_opts o;
    char *keys_file, *default_avatar, *audit_path;
    pthread_mutex_t mu; /* ks, lims */
    keyset *ks;
    limiter *lims;
    pthread_mutex_t amu; /* the audit stream */
    FILE *audit;         /* NULL = stderr */
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s ? s : "");
    char *d = lip_malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n + 1);
    return d;
}

static void keyset_unref(keyset *ks)
{
    if (!ks || atomic_fetch_sub(&ks->refs, 1) != 1) return;
    for (int i = 0; i < ks->n; i++) {
        for (int j = 0; j < ks->keys[i].navatars; j++) lip_free(ks->keys[i].avatars[j]);
        lip_free(ks->keys[i].avatars);
    }
    lip_free(ks->keys);
    lip_free(ks);
}

static keyset *keyset_get(lip_auth *a)
{
    pthread_mutex_lock(&a->mu);
    keyset *ks = a->ks;
    atomic_fetch_add(&ks->refs, 1);
    pthread_mutex_unlock(&a->mu);
    return ks;
}

static int cmp_id(const void *x, const void *y)
{
    return strcmp((*(key_ent *const *)x)->id, (*(key_ent *const *)y)->id);
}

static int cmp_hash(const void *x, const void *y)
{
    return memcmp(((const key_ent *)x)->hash, ((const key_ent *)y)->hash, 32);
}

static int cmp_lim(const void *x, const void *y)
{
    return strcmp((*(limiter *const *)x)->id, (*(limiter *const *)y)->id);
}

/* Gives every key of ks its limiter (the one its id had before, else a new one); a->mu held.
 * Existing limiters are looked up in a sorted array, so a reload of many keys is not
 * quadratic. A key left without one (out of memory) has lim NULL. */
static void limit_all(lip_auth *a, keyset *ks)
{
    size_t nl = 0;
    for (limiter *l = a->lims; l; l = l->next) nl++;
    limiter **sorted = nl ? lip_calloc(nl, sizeof *sorted) : NULL;
    size_t at = 0;
    for (limiter *l = a->lims; l && sorted; l = l->next) sorted[at++] = l;
    if (sorted) qsort(sorted, nl, sizeof *sorted, cmp_lim);
    for (int j = 0; j < ks->n; j++) {
        key_ent *k = &ks->keys[j];
        limiter probe, *pp = &probe, **hit = NULL;
        lip_strlcpy(probe.id, k->id, sizeof probe.id);
        if (sorted) hit = bsearch(&pp, sorted, nl, sizeof *sorted, cmp_lim);
        else
            for (limiter *l = a->lims; l && !hit; l = l->next) /* no memory for the array */
                if (strcmp(l->id, k->id) == 0) k->lim = l;
        if (hit) k->lim = *hit;
        if (k->lim) continue;
        limiter *l = lip_calloc(1, sizeof *l);
        if (!l) continue;
        lip_strlcpy(l->id, k->id, sizeof l->id);
        pthread_mutex_init(&l->mu, NULL);
        l->next = a->lims;
        a->lims = l;
        k->lim = l;
    }
    lip_free(sorted);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int key_fail(lip_err *err, const char *file, int i, const char *id, const char *fmt,
                    const char *what)
{
    char where[160];
    snprintf(where, sizeof where, "%s: keys[%d]%s%s%s", file, i, id && *id ? " (id '" : "",
             id && *id ? id : "", id && *id ? "')" : "");
    return lip_err_set(err, LIP_EINVAL, "%s: %s%s", where, fmt, what ? what : "");
}

/* A number field of a key: absent -> dflt; else a finite number in [0, max]. */
static int num_field(const cJSON *o, const char *name, double max, double dflt, double *out,
                     const char *file, int i, const char *id, lip_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > max) {
        char m[96];
        snprintf(m, sizeof m, "%s must be a number from 0 to %.0f", name, max);
        return key_fail(err, file, i, id, m, NULL);
    }
    *out = v->valuedouble;
    return 0;
}

/* Parses one key object into k (avatars allocated). */
static int parse_key(lip_auth *a, const cJSON *o, key_ent *k, const char *file, int i,
                     lip_err *err)
{
    static const char *const known[] = {"id", "sha256", "role", "avatars", "frames_per_second",
                                        "burst_frames", "max_concurrent", "description"};
    if (!cJSON_IsObject(o)) return key_fail(err, file, i, NULL, "expected an object", NULL);
    for (const cJSON *f = o->child; f; f = f->next) {
        bool ok = false;
        for (size_t j = 0; j < LIP_ARRAY_LEN(known); j++) ok |= strcmp(f->string, known[j]) == 0;
        if (!ok)
            return key_fail(err, file, i, NULL, "unknown field ", f->string); /* typo guard */
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!cJSON_IsString(id) || !lip_valid_id(id->valuestring, strlen(id->valuestring)))
        return key_fail(err, file, i, NULL, "id must be 1-64 characters of [A-Za-z0-9_.-]",
                        NULL);
    lip_strlcpy(k->id, id->valuestring, sizeof k->id);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    if (!cJSON_IsString(h) || strlen(h->valuestring) != 64)
        return key_fail(err, file, i, k->id, "sha256 must be the 64 hex digits of the key's "
                        "SHA-256 (printf %s KEY | sha256sum)", NULL);
    for (int j = 0; j < 32; j++) {
        int hi = hexval(h->valuestring[2 * j]), lo = hexval(h->valuestring[2 * j + 1]);
        if (hi < 0 || lo < 0)
            return key_fail(err, file, i, k->id, "sha256 holds a character that is not hex",
                            NULL);
        k->hash[j] = (unsigned char)(hi << 4 | lo);
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "role");
    if (!r) k->role = LIP_AUTH_CLIENT;
    else if (cJSON_IsString(r) && strcmp(r->valuestring, "client") == 0) k->role = LIP_AUTH_CLIENT;
    else if (cJSON_IsString(r) && strcmp(r->valuestring, "admin") == 0) k->role = LIP_AUTH_ADMIN;
    else return key_fail(err, file, i, k->id, "role must be \"client\" or \"admin\"", NULL);
    const cJSON *av = cJSON_GetObjectItemCaseSensitive(o, "avatars");
    if (cJSON_IsString(av) && strcmp(av->valuestring, "*") == 0) {
        k->all = true;
    } else if (cJSON_IsArray(av)) {
        int n = cJSON_GetArraySize(av);
        if (n > MAX_AVATARS_PER_KEY)
            return key_fail(err, file, i, k->id, "more than 10000 avatars", NULL);
        k->avatars = lip_calloc((size_t)n + 1, sizeof *k->avatars);
        if (!k->avatars) return lip_err_set(err, LIP_ENOMEM, "out of memory reading %s", file);
        const cJSON *e;
        cJSON_ArrayForEach(e, av)
        {
            if (cJSON_IsString(e) && strcmp(e->valuestring, "*") == 0) {
                k->all = true;
                continue;
            }
            if (!cJSON_IsString(e) || !lip_valid_id(e->valuestring, strlen(e->valuestring)))
                return key_fail(err, file, i, k->id, "avatars must hold avatar ids (DATA.md) "
                                "or \"*\"", NULL);
            k->avatars[k->navatars] = dup_str(e->valuestring);
            if (!k->avatars[k->navatars])
                return lip_err_set(err, LIP_ENOMEM, "out of memory reading %s", file);
            k->navatars++;
        }
    } else {
        return key_fail(err, file, i, k->id, "avatars must be \"*\" or a list of avatar ids "
                        "(an empty list allows none)", NULL);
    }
    double fps, burst, conc;
    if (num_field(o, "frames_per_second", 1e6, a->o.frames_per_second, &fps, file, i, k->id,
                  err) ||
        num_field(o, "burst_frames", 1e8, a->o.burst_frames, &burst, file, i, k->id, err) ||
        num_field(o, "max_concurrent", 1e6, a->o.max_concurrent, &conc, file, i, k->id, err))
        return LIP_EINVAL;
    k->fps = fps;
    k->burst = burst > 0 ? burst : LIP_MAX(1.0, 2.0 * fps);
    k->max_conc = (int)conc;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "description");
    if (d && !cJSON_IsString(d))
        return key_fail(err, file, i, k->id, "description must be a string", NULL);
    return 0;
}

/* Reads and checks the keys file into a new key set (refs 1). */
static keyset *load_keys(lip_auth *a, lip_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    lip_err fe = {0};
    if (lip_file_read(a->keys_file, KEYS_FILE_MAX, &buf, &len, &fe)) {
        lip_err_set(err, fe.code, "auth.keys_file: %s", fe.msg);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    memset(buf, 0, len); /* only hashes, but no need to keep them around */
    lip_free(buf);
    keyset *ks = NULL;
    const cJSON *keys = root ? cJSON_GetObjectItemCaseSensitive(root, "keys") : NULL;
    if (!root || !cJSON_IsObject(root) || !cJSON_IsArray(keys)) {
        lip_err_set(err, LIP_EFORMAT, "%s: expected a JSON object {\"keys\": [...]}%s",
                    a->keys_file, root ? "" : " (not valid JSON)");
        goto out;
    }
    for (const cJSON *f = root->child; f; f = f->next)
        if (strcmp(f->string, "keys") != 0) {
            lip_err_set(err, LIP_EFORMAT, "%s: unknown top-level field '%s' (expected only "
                        "\"keys\")", a->keys_file, f->string);
            goto out;
        }
    int n = cJSON_GetArraySize(keys);
    if (n > MAX_KEYS) {
        lip_err_set(err, LIP_EINVAL, "%s: %d keys, at most %d", a->keys_file, n, MAX_KEYS);
        goto out;
    }
    ks = lip_calloc(1, sizeof *ks);
    if (ks) ks->keys = lip_calloc((size_t)n + 1, sizeof *ks->keys);
    if (!ks || !ks->keys) {
        lip_free(ks);
        ks = NULL;
        lip_err_set(err, LIP_ENOMEM, "out of memory reading %s", a->keys_file);
        goto out;
    }
    atomic_init(&ks->refs, 1);
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, keys)
    {
        key_ent *k = &ks->keys[ks->n];
        ks->n++; /* counted at once so a failure frees what was parsed */
        if (parse_key(a, o, k, a->keys_file, i, err)) goto bad;
        k->index = i;
        i++;
    }
    /* Duplicates by sorting (the file may hold many keys): ids, then secrets. The set stays
     * sorted by hash for the lookups. */
    if (ks->n > 1) {
        key_ent **byid = lip_calloc((size_t)ks->n, sizeof *byid);
        if (!byid) {
            lip_err_set(err, LIP_ENOMEM, "out of memory reading %s", a->keys_file);
            goto bad;
        }
        for (int j = 0; j < ks->n; j++) byid[j] = &ks->keys[j];
        qsort(byid, (size_t)ks->n, sizeof *byid, cmp_id);
        const key_ent *dup = NULL;
        for (int j = 1; j < ks->n && !dup; j++)
            if (strcmp(byid[j - 1]->id, byid[j]->id) == 0)
                dup = byid[j - 1]->index > byid[j]->index ? byid[j - 1] : byid[j];
        lip_free(byid);
        if (dup) {
            key_fail(err, a->keys_file, dup->index, dup->id, "id used twice", NULL);
            goto bad;
        }
        qsort(ks->keys, (size_t)ks->n, sizeof *ks->keys, cmp_hash);
        for (int j = 1; j < ks->n; j++)
            if (memcmp(ks->keys[j - 1].hash, ks->keys[j].hash, 32) == 0) {
                const key_ent *x = &ks->keys[j - 1], *y = &ks->keys[j];
                if (x->index > y->index) {
                    const key_ent *t = x;
                    x = y;
                    y = t;
                }
                key_fail(err, a->keys_file, y->index, y->id, "same secret as key ", x->id);
                goto bad;
            }
    }
    pthread_mutex_lock(&a->mu);
    limit_all(a, ks);
    pthread_mutex_unlock(&a->mu);
    for (int j = 0; j < ks->n; j++)
        if (!ks->keys[j].lim) {
            lip_err_set(err, LIP_ENOMEM, "out of memory reading %s", a->keys_file);
            goto bad;
        }
    goto out;
bad:
    keyset_unref(ks);
    ks = NULL;
out:
    cJSON_Delete(root);
    return ks;
}

/* The SHA-256 of a presented key, as bytes. */
static void hash_key(const char *key, unsigned char h[32])
{
    char hex[65];
    lip_auth_hash_hex(key, strlen(key), hex);
    for (int i = 0; i < 32; i++)
        h[i] = (unsigned char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
}

/* The key whose hash is h: a binary search over the hashes (O(log n): a linear constant-time
 * scan measured 285 us per call with 10,000 keys), then a constant-time comparison of the
 * candidate. The search's timing depends only on how the SHA-256 of a guess orders against
 * the stored hashes, which tells nothing that helps find a key (that needs a preimage). */
static const key_ent *find_key(const keyset *ks, const unsigned char h[32])
{
    int lo = 0, hi = ks->n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (memcmp(ks->keys[mid].hash, h, 32) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (ks->n > 0 && CRYPTO_memcmp(ks->keys[lo].hash, h, 32) == 0) return &ks->keys[lo];
    return NULL;
}

static bool key_allows(const key_ent *k, const char *avatar)
{
    if (k->all) return true;
    for (int i = 0; i < k->navatars; i++)
        if (strcmp(k->avatars[i], avatar) == 0) return true;
    return false;
}

static int open_audit(lip_auth *a, lip_err *err)
{
    if (!a->audit_path[0]) return 0;
    FILE *f = fopen(a->audit_path, "ae");
    if (!f)
        return lip_err_set(err, LIP_EIO, "audit.file '%s': cannot open for appending: %s",
                           a->audit_path, strerror(errno));
    pthread_mutex_lock(&a->amu);
    FILE *old = a->audit;
    a->audit = f;
    pthread_mutex_unlock(&a->amu);
    if (old) fclose(old);
    return 0;
}

lip_auth_opts lip_auth_opts_default(void)
{
    lip_auth_opts o = {0};
    return o;
}

lip_auth *lip_auth_new(const lip_auth_opts *opts, lip_err *err)
{
    if (!opts || !opts->keys_file || !*opts->keys_file) {
        lip_err_set(err, LIP_EINVAL, "auth: no keys file given");
        return NULL;
    }
    if (!(opts->frames_per_second >= 0) || opts->burst_frames < 0 || opts->max_concurrent < 0) {
        lip_err_set(err, LIP_EINVAL, "auth: limits must be >= 0 (frames_per_second %g, "
                    "burst_frames %d, max_concurrent %d)", opts->frames_per_second,
                    opts->burst_frames, opts->max_concurrent);
        return NULL;
    }
    lip_auth *a = lip_calloc(1, sizeof *a);
    if (!a) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating auth");
        return NULL;
    }
    a->o = *opts;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->amu, NULL);
    a->keys_file = dup_str(opts->keys_file);
    a->default_avatar = dup_str(opts->default_avatar);
    a->audit_path = dup_str(opts->audit_file);
    if (!a->keys_file || !a->default_avatar || !a->audit_path) {
        lip_err_set(err, LIP_ENOMEM, "out of memory creating auth");
        goto fail;
    }
    a->o.keys_file = a->keys_file;
    a->o.default_avatar = a->default_avatar;
    a->o.audit_file = a->audit_path;
    a->ks = load_keys(a, err);
    if (!a->ks || open_audit(a, err)) goto fail;
    return a;
fail:
    lip_auth_free(a);
    return NULL;
}

int lip_auth_reload(lip_auth *a, lip_err *err)
{
    keyset *ks = load_keys(a, err);
    if (!ks) return err && err->code ? err->code : LIP_EINVAL;
    pthread_mutex_lock(&a->mu);
    keyset *old = a->ks;
    a->ks = ks;
    pthread_mutex_unlock(&a->mu);
    keyset_unref(old);
    return open_audit(a, err);
}

void lip_auth_free(lip_auth *a)
{
    if (!a) return;
    keyset_unref(a->ks);
    for (limiter *l = a->lims, *n; l; l = n) {
        n = l->next;
        pthread_mutex_destroy(&l->mu);
        lip_free(l);
    }
    if (a->audit) fclose(a->audit);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->amu);
    lip_free(a->keys_file);
    lip_free(a->default_avatar);
    lip_free(a->audit_path);
    lip_free(a);
}

int lip_auth_key_count(lip_auth *a)
{
    pthread_mutex_lock(&a->mu);
    int n = a->ks->n;
    pthread_mutex_unlock(&a->mu);
    return n;
}

int lip_auth_lookup(lip_auth *a, const char *key, lip_auth_principal *p)
{
    unsigned char h[32];
    hash_key(key, h);
    keyset *ks = keyset_get(a);
    const key_ent *k = find_key(ks, h);
    if (k) {
        lip_strlcpy(p->id, k->id, sizeof p->id);
        p->role = k->role;
        p->all_avatars = k->all;
    }
    keyset_unref(ks);
    return k ? 0 : LIP_EPERM;
}

bool lip_auth_avatar_allowed(lip_auth *a, const char *id, const char *avatar)
{
    keyset *ks = keyset_get(a);
    bool ok = false;
    for (int i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].id, id) == 0) ok = key_allows(&ks->keys[i], avatar);
    keyset_unref(ks);
    return ok;
}

/* ---- access policy --------------------------------------------------------------------------
 * One row per RPC of every service this build serves. An RPC missing here is admin-only, so a
 * service added later is closed to tenants until someone says where its avatar field is. */

enum {
    P_OPEN = 1u,       /* any valid key; names no avatar (health, listings, global stats) */
    P_ADMIN = 2u,      /* role admin only (and the avatar check) */
    P_DEFAULT = 4u,    /* no avatar field: always the default avatar */
    P_EMPTY_ALL = 8u,  /* an empty avatar field means every avatar: needs "*" */
    P_IF_PRESENT = 16u /* check only messages that carry the outer field (stream opens) */
};

typedef struct policy {
    const char *path;
    unsigned flags;
    uint32_t av[2];  /* avatar field path (0 = none) */
    uint32_t resp;   /* response field whose occurrences are frames (0 = none) */
    uint32_t req;    /* request varint field that is the frame count (when resp is 0) */
    /* listings: the response's repeated field naming avatars, the id's field inside each
     * element (0 = the element is the id) and a count field to lower; entries of avatars the
     * key may not use are removed (a tenant does not learn other tenants' avatars) */
    uint32_t list[3];
} policy;

#define MONO(svc)                                                                                \
    {"/" svc "/ListModels", P_OPEN, {0, 0}, 0, 0, {1, 1, 0}},                                    \
    {"/" svc "/LoadModel", P_ADMIN, {1, 0}, 0, 0, {0, 0, 0}},                                    \
    {"/" svc "/UnloadModel", P_ADMIN, {1, 0}, 0, 0, {0, 0, 0}},                                  \
    {"/" svc "/GetModelStats", P_EMPTY_ALL, {1, 0}, 0, 0, {0, 0, 0}},                            \
    {"/" svc "/Health", P_OPEN, {0, 0}, 0, 0, {0, 0, 0}}

#define OPT "/optimized_lipsyncsrv.OptimizedLipSyncService/"

static const policy policies[] = {
    {"/monolithic.MonolithicService/InferBatchComposite", 0, {1, 0}, 1, 0, {0, 0, 0}},
    MONO("monolithic.MonolithicService"),
    {"/compositing.CompositingService/InferBatchComposite", 0, {1, 0}, 1, 0, {0, 0, 0}},
    MONO("compositing.CompositingService"),
    {"/inference.InferenceService/InferBatch", 0, {1, 0}, 1, 0, {0, 0, 0}},
    MONO("inference.InferenceService"),
    {"/lipsync.LipSyncComposite/InferBatchComposite", P_DEFAULT, {0, 0}, 1, 0, {0, 0, 0}},
    {"/lipsync.LipSyncComposite/Health", P_OPEN, {0, 0}, 0, 0, {0, 0, 0}},
    {"/lipsync.LipSync/InferBatch", P_DEFAULT, {0, 0}, 0, 3, {0, 0, 0}},
    {"/lipsync.LipSync/Health", P_OPEN, {0, 0}, 0, 0, {0, 0, 0}},
    {OPT "GenerateInference", 0, {1, 0}, 3, 0, {0, 0, 0}},
    {OPT "GenerateBatchInference", 0, {1, 0}, 1, 0, {0, 0, 0}},
    {OPT "GenerateBatchWithAudio", 0, {1, 0}, 1, 0, {0, 0, 0}},
    {OPT "StreamInference", 0, {1, 0}, 3, 0, {0, 0, 0}},
    {OPT "LoadPackage", P_ADMIN, {1, 0}, 0, 0, {0, 0, 0}},
    {OPT "GetStats", 0, {1, 0}, 0, 0, {0, 0, 0}},
    {OPT "ListModels", P_OPEN, {0, 0}, 0, 0, {1, 0, 2}},
    {OPT "HealthCheck", P_OPEN, {0, 0}, 0, 0, {0, 0, 0}},
    {OPT "GetVideoFrame", 0, {1, 0}, 0, 0, {0, 0, 0}},
    {OPT "GetModelMetadata", 0, {1, 0}, 0, 0, {0, 0, 0}},
    {"/lipsync.v1.LipSync/Stream", P_IF_PRESENT, {1, 1}, 1, 0, {0, 0, 0}},
    {"/lipsync.v1.LipSync/Render", 0, {1, 0}, 1, 0, {0, 0, 0}},
    {"/lipsync.v1.LipSync/ListAvatars", P_OPEN, {0, 0}, 0, 0, {1, 1, 0}},
    {"/lipsync.v1.LipSync/GetStats", P_OPEN, {0, 0}, 0, 0, {0, 0, 0}},
};
#undef OPT

static const policy *policy_find(const char *path)
{
    for (size_t i = 0; i < LIP_ARRAY_LEN(policies); i++)
        if (strcmp(policies[i].path, path) == 0) return &policies[i];
    return NULL;
}

/* The RPC name after the last '/', for messages. */
static const char *rpc_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- audit log ----------------------------------------------------------------------------- */

/* Appends s as a JSON string body (escaped, at most max bytes of input) to out. */
static size_t json_str(char *out, size_t n, size_t at, const char *s, size_t max)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; s && s[i] && i < max && at + 8 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[at++] = '\\';
            out[at++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[at++] = '\\';
            out[at++] = 'u';
            out[at++] = '0';
            out[at++] = '0';
            out[at++] = hx[c >> 4];
            out[at++] = hx[c & 15];
        } else {
            out[at++] = (char)c;
        }
    }
    out[at] = 0;
    return at;
}

typedef struct audit_rec {
    const char *key_id, *role, *path, *avatar, *peer, *msg;
    long frames;
    grpc_status_code code;
    double latency_ms;
} audit_rec;

static void audit_write(lip_auth *a, const audit_rec *r)
{
    char line[1536];
    int64_t now = lip_time_unix_ms();
    time_t sec = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t at = (size_t)snprintf(line, sizeof line,
                                 "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"key_id\":\"",
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                 tm.tm_min, tm.tm_sec, (int)(now % 1000));
    at = json_str(line, sizeof line, at, r->key_id, 64);
    at += (size_t)snprintf(line + at, sizeof line - at, "\",\"role\":\"%s\",\"rpc\":\"",
                           r->role);
    at = json_str(line, sizeof line, at, r->path, 160);
    at += (size_t)snprintf(line + at, sizeof line - at, "\",\"avatar\":\"");
    at = json_str(line, sizeof line, at, r->avatar, 72);
    at += (size_t)snprintf(line + at, sizeof line - at,
                           "\",\"frames\":%ld,\"status\":\"%s\",\"code\":%d,\"latency_ms\":%.1f,"
                           "\"peer\":\"", r->frames, lip_rpc_status_name(r->code), (int)r->code,
                           r->latency_ms);
    at = json_str(line, sizeof line, at, r->peer, 96);
    at += (size_t)snprintf(line + at, sizeof line - at, "\",\"message\":\"");
    at = json_str(line, sizeof line, at, r->msg, 300);
    if (at + 4 < sizeof line) memcpy(line + at, "\"}\n", 4);
    pthread_mutex_lock(&a->amu);
    FILE *f = a->audit ? a->audit : stderr;
    fputs(line, f);
    fflush(f);
    pthread_mutex_unlock(&a->amu);
}

/* ---- the guard ----------------------------------------------------------------------------- */

typedef struct call_st {
    keyset *ks;
    const key_ent *k;
    const policy *pol;
    pthread_mutex_t mu; /* avatar */
    char avatar[LIP_AUTH_ID_MAX + 8];
    atomic_long frames;
    long req_frames;
    char peer[96];
} call_st;

static const char *role_name(int role) { return role == LIP_AUTH_ADMIN ? "admin" : "client"; }

/* Logs a call refused before it started (always: refusals are security events, except rate
 * refusals, which only the full audit logs because a busy client can cause many). */
static void refused(lip_auth *a, lip_rpc_call *c, const key_ent *k, grpc_status_code code,
                    const char *msg)
{
    if (code == GRPC_STATUS_RESOURCE_EXHAUSTED && !a->o.audit_all) return;
    char peer[96];
    lip_rpc_call_peer(c, peer, sizeof peer);
    audit_rec r = {.key_id = k ? k->id : "", .role = k ? role_name(k->role) : "",
                   .path = lip_rpc_call_path(c), .avatar = "", .peer = peer, .msg = msg,
                   .code = code, .latency_ms = lip_time_ms() - lip_rpc_call_start_ms(c)};
    audit_write(a, &r);
}

/* "Bearer <key>" (scheme case-insensitive, one or more spaces) -> the key; NULL otherwise. */
static const char *bearer(const char *v)
{
    if (strncasecmp(v, "bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t')) return NULL;
    v += 6;
    while (*v == ' ' || *v == '\t') v++;
    return *v ? v : NULL;
}

static grpc_status_code g_begin(void *ud, lip_rpc_call *c, void **state, lip_err *err)
{
    lip_auth *a = ud;
    const char *path = lip_rpc_call_path(c);
    char hdr[LIP_AUTH_KEY_MAX + 16];
    int hl = lip_rpc_call_metadata(c, "authorization", hdr, sizeof hdr);
    const char *key = hl > 0 ? bearer(hdr) : NULL;
    if (!key) {
        lip_err_set(err, LIP_EPERM, "%s: missing API key (send metadata 'authorization: Bearer "
                    "<key>')%s", rpc_name(path), hl > 0 ? "; the authorization value is not "
                    "'Bearer <key>'" : "");
        memset(hdr, 0, sizeof hdr);
        refused(a, c, NULL, GRPC_STATUS_UNAUTHENTICATED, err->msg);
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    unsigned char h[32];
    hash_key(key, h);
    memset(hdr, 0, sizeof hdr);
    keyset *ks = keyset_get(a);
    const key_ent *k = find_key(ks, h);
    grpc_status_code st = GRPC_STATUS_OK;
    const policy *pol = policy_find(path);
    if (!k) {
        st = GRPC_STATUS_UNAUTHENTICATED;
        lip_err_set(err, LIP_EPERM, "%s: API key not recognised", rpc_name(path));
    } else if ((!pol || (pol->flags & P_ADMIN)) && k->role != LIP_AUTH_ADMIN) {
        st = GRPC_STATUS_PERMISSION_DENIED;
        lip_err_set(err, LIP_EPERM, "API key '%s' (role client) may not call %s: %s", k->id,
                    rpc_name(path), pol ? "admin only" : "not open to tenants (admin only)");
    }
    if (st != GRPC_STATUS_OK) {
        refused(a, c, k, st, err->msg);
        keyset_unref(ks);
        return st;
    }
    /* Limits: calls in progress, then the frame bucket (only RPCs that make frames). */
    limiter *l = k->lim;
    double retry = 0;
    pthread_mutex_lock(&l->mu);
    double now = lip_time_ms();
    if (!l->bucket_set) {
        lip_auth_bucket_init(&l->b, k->burst, now);
        l->bucket_set = true;
    }
    if (k->max_conc > 0 && l->inflight >= k->max_conc) {
        retry = CONCURRENCY_RETRY_MS;
        lip_err_set(err, LIP_EBUSY, "API key '%s': %d calls in progress, limit %d; retry after "
                    "%.0f ms", k->id, l->inflight, k->max_conc, retry);
    } else if (pol && (pol->resp || pol->req) &&
               !lip_auth_bucket_admit(&l->b, k->fps, k->burst, now, &retry)) {
        lip_err_set(err, LIP_EBUSY, "API key '%s': frame rate limit %.4g frames/s used up; "
                    "retry after %.0f ms", k->id, k->fps, retry);
    } else {
        l->inflight++;
    }
    pthread_mutex_unlock(&l->mu);
    if (retry > 0) {
        lip_rpc_call_set_retry_after(c, retry);
        refused(a, c, k, GRPC_STATUS_RESOURCE_EXHAUSTED, err->msg);
        keyset_unref(ks);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    call_st *cs = lip_calloc(1, sizeof *cs);
    if (!cs) {
        pthread_mutex_lock(&l->mu);
        l->inflight--;
        pthread_mutex_unlock(&l->mu);
        keyset_unref(ks);
        lip_err_set(err, LIP_ENOMEM, "out of memory");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    cs->ks = ks;
    cs->k = k;
    cs->pol = pol;
    pthread_mutex_init(&cs->mu, NULL);
    atomic_init(&cs->frames, 0);
    if (pol && (pol->flags & P_DEFAULT))
        lip_strlcpy(cs->avatar, a->default_avatar, sizeof cs->avatar);
    lip_rpc_call_peer(c, cs->peer, sizeof cs->peer);
    *state = cs;
    return GRPC_STATUS_OK;
}

static grpc_status_code g_message(void *ud, lip_rpc_call *c, void *state, const uint8_t *msg,
                                  size_t len, lip_err *err)
{
    lip_auth *a = ud;
    call_st *cs = state;
    const policy *pol = cs->pol;
    if (!pol || (pol->flags & P_OPEN)) return GRPC_STATUS_OK;
    if (pol->req) {
        uint64_t v = 0;
        if (lip_auth_pb_varint(msg, len, pol->req, &v) == 1) cs->req_frames = (long)(v & 0xffff);
    }
    char avatar[LIP_AUTH_ID_MAX + 8];
    if (pol->flags & P_DEFAULT) {
        lip_strlcpy(avatar, a->default_avatar, sizeof avatar);
    } else {
        int depth = pol->av[1] ? 2 : 1;
        const uint8_t *v = NULL;
        size_t vl = 0;
        int r = lip_auth_pb_string(msg, len, pol->av, depth, &v, &vl);
        if (r < 0) {
            lip_err_set(err, LIP_EFORMAT, "%s: the request is not well-formed protobuf",
                        rpc_name(lip_rpc_call_path(c)));
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
        if (r == 0 && (pol->flags & P_IF_PRESENT)) return GRPC_STATUS_OK;
        if (vl >= sizeof avatar || (vl && memchr(v, 0, vl))) {
            /* Longer than any id: the service refuses it as malformed, and no key names it. */
            lip_err_set(err, LIP_EPERM, "API key '%s' may not use this avatar (the id is not "
                        "valid)", cs->k->id);
            return GRPC_STATUS_PERMISSION_DENIED;
        }
        if (vl) memcpy(avatar, v, vl);
        avatar[vl] = 0;
        if (!vl && (pol->flags & P_EMPTY_ALL)) {
            if (cs->k->all) return GRPC_STATUS_OK;
            lip_err_set(err, LIP_EPERM, "API key '%s' may not query every avatar: name one of "
                        "its own", cs->k->id);
            return GRPC_STATUS_PERMISSION_DENIED;
        }
        if (!vl) lip_strlcpy(avatar, a->default_avatar, sizeof avatar);
    }
    pthread_mutex_lock(&cs->mu);
    lip_strlcpy(cs->avatar, avatar, sizeof cs->avatar);
    pthread_mutex_unlock(&cs->mu);
    if (!avatar[0]) return GRPC_STATUS_OK; /* no default: the service refuses the request */
    if (!key_allows(cs->k, avatar)) {
        lip_err_set(err, LIP_EPERM, "API key '%s' may not use avatar '%s'", cs->k->id, avatar);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    return GRPC_STATUS_OK;
}

/* lip_auth_keep_fn over the call's key. */
static bool keep_avatar(void *ud, const uint8_t *id, size_t len)
{
    const key_ent *k = ud;
    char s[LIP_AUTH_ID_MAX + 8];
    if (len >= sizeof s || memchr(id, 0, len)) return k->all;
    memcpy(s, id, len);
    s[len] = 0;
    return key_allows(k, s);
}

static size_t g_output(void *ud, lip_rpc_call *c, void *state, uint8_t *msg, size_t len)
{
    (void)ud;
    (void)c;
    call_st *cs = state;
    const policy *pol = cs->pol;
    if (!pol) return len;
    if (pol->list[0] && !cs->k->all) {
        long nl = lip_auth_pb_filter(msg, len, pol->list[0], pol->list[1], pol->list[2],
                                     keep_avatar, (void *)cs->k);
        /* Our own services make these messages; one that does not parse is sent empty rather
         * than unfiltered (fail closed). */
        return nl >= 0 ? (size_t)nl : 0;
    }
    long n = 0;
    if (pol->resp) {
        int r = lip_auth_pb_count(msg, len, pol->resp);
        n = r > 0 ? r : 0;
    } else if (pol->req) {
        n = cs->req_frames;
    }
    if (n <= 0) return len;
    atomic_fetch_add(&cs->frames, n);
    limiter *l = cs->k->lim;
    pthread_mutex_lock(&l->mu);
    if (cs->k->fps > 0) lip_auth_bucket_charge(&l->b, (double)n);
    pthread_mutex_unlock(&l->mu);
    return len;
}

static void g_end(void *ud, lip_rpc_call *c, void *state, grpc_status_code code, const char *msg)
{
    lip_auth *a = ud;
    call_st *cs = state;
    limiter *l = cs->k->lim;
    pthread_mutex_lock(&l->mu);
    l->inflight--;
    pthread_mutex_unlock(&l->mu);
    bool admin = !cs->pol || (cs->pol->flags & P_ADMIN);
    if (a->o.audit_all || admin || code == GRPC_STATUS_PERMISSION_DENIED ||
        code == GRPC_STATUS_UNAUTHENTICATED) {
        pthread_mutex_lock(&cs->mu);
        audit_rec r = {.key_id = cs->k->id, .role = role_name(cs->k->role),
                       .path = lip_rpc_call_path(c), .avatar = cs->avatar, .peer = cs->peer,
                       .msg = msg, .frames = atomic_load(&cs->frames), .code = code,
                       .latency_ms = lip_time_ms() - lip_rpc_call_start_ms(c)};
        audit_write(a, &r);
        pthread_mutex_unlock(&cs->mu);
    }
    keyset_unref(cs->ks);
    pthread_mutex_destroy(&cs->mu);
    lip_free(cs);
}

int lip_auth_attach(lip_auth *a, lip_rpc_server *srv, lip_err *err)
{
    lip_rpc_guard g = {.ud = a, .begin = g_begin, .message = g_message, .output = g_output,
                       .end = g_end};
    return lip_rpc_server_set_guard(srv, &g, err);
}
