/* SPDX-License-Identifier: MIT */
/* tests/test_auth.c: the auth module's pieces without a server: SHA-256 against the FIPS 180-2
 * vector, the protobuf wire scanner (nested, last-wins, wrong wire types, truncation), the
 * frame token bucket with an explicit clock, and the key store (lookup, scopes, every kind of
 * bad keys file, reload that keeps the old keys on failure). The guard itself is exercised
 * against a real server by tests/py/test_security.py. */
#include "auth/auth.h"
#include "test.h"

#include "lipsync_v1.pb-c.h"
#include "optimized_lipsyncsrv.pb-c.h"

#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static char dir[] = "/tmp/lipsync-test-auth-XXXXXX";
static char keys_path[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void t_hash(void)
{
    char hex[65];
    lip_auth_hash_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    lip_auth_hash_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
}

static void t_wire(void)
{
    /* field 1 "t1", field 5 varint 8, field 1 "t2": the last value wins. */
    const uint8_t m[] = {0x0a, 2, 't', '1', 0x28, 8, 0x0a, 2, 't', '2'};
    const uint32_t p1[] = {1};
    const uint8_t *v = NULL;
    size_t vl = 0;
    CHECK(lip_auth_pb_string(m, sizeof m, p1, 1, &v, &vl) == 1);
    CHECK(vl == 2 && memcmp(v, "t2", 2) == 0);
    uint64_t n = 0;
    CHECK(lip_auth_pb_varint(m, sizeof m, 5, &n) == 1 && n == 8);
    CHECK(lip_auth_pb_count(m, sizeof m, 1) == 2);
    CHECK(lip_auth_pb_count(m, sizeof m, 3) == 0);
    const uint32_t p3[] = {3};
    CHECK(lip_auth_pb_string(m, sizeof m, p3, 1, &v, &vl) == 0);
    CHECK(lip_auth_pb_string(m, 0, p1, 1, &v, &vl) == 0); /* empty message: absent */
    /* Truncated length, truncated varint, group wire type, field number 0. */
    CHECK(lip_auth_pb_string(m, 3, p1, 1, &v, &vl) == LIP_EFORMAT);
    const uint8_t tv[] = {0x28, 0x80};
    CHECK(lip_auth_pb_count(tv, sizeof tv, 5) == LIP_EFORMAT);
    const uint8_t grp[] = {0x0b, 0x0c};
    CHECK(lip_auth_pb_count(grp, sizeof grp, 1) == LIP_EFORMAT);
    const uint8_t zero[] = {0x02, 0x00};
    CHECK(lip_auth_pb_count(zero, sizeof zero, 1) == LIP_EFORMAT);
    /* The avatar field sent as a varint: protobuf-c refuses it, so must the scanner. */
    const uint8_t wt[] = {0x08, 0x05};
    CHECK(lip_auth_pb_string(wt, sizeof wt, p1, 1, &v, &vl) == LIP_EFORMAT);
    /* Nested: StreamRequest{open(1){avatar_id(1)}}, twice; the second open lacks the id, so
     * the merged message keeps "a1"; a third names "b2". */
    const uint8_t ns[] = {0x0a, 4, 0x0a, 2, 'a', '1', 0x0a, 2, 0x10, 1,
                          0x0a, 4, 0x0a, 2, 'b', '2'};
    const uint32_t p11[] = {1, 1};
    CHECK(lip_auth_pb_string(ns, 10, p11, 2, &v, &vl) == 1 && vl == 2 && !memcmp(v, "a1", 2));
    CHECK(lip_auth_pb_string(ns, sizeof ns, p11, 2, &v, &vl) == 1 && vl == 2 &&
          !memcmp(v, "b2", 2));
    /* Outer present, leaf absent: found, empty (the default avatar). */
    const uint8_t open_only[] = {0x0a, 2, 0x10, 1};
    CHECK(lip_auth_pb_string(open_only, sizeof open_only, p11, 2, &v, &vl) == 1 && vl == 0);
    /* Outer absent (an audio chunk, field 2). */
    const uint8_t audio[] = {0x12, 1, 0};
    CHECK(lip_auth_pb_string(audio, sizeof audio, p11, 2, &v, &vl) == 0);
    CHECK(lip_auth_pb_string(m, sizeof m, p11, 4, &v, &vl) == LIP_EINVAL);
}

static bool keep_ab(void *ud, const uint8_t *id, size_t len)
{
    (void)ud;
    return (len == 1 && (id[0] == 'a' || id[0] == 'b'));
}

/* Listing filters on real protobuf-c messages: the filtered bytes unpack to exactly the
 * allowed entries, the other fields unchanged, the count lowered. */
static void t_filter(void)
{
    /* optimized ListModelsResponse: repeated string loaded_models = 1; int32 count = 2. */
    char *names[] = {"a", "x", "b", "yy", "a"};
    OptimizedLipsyncsrv__ListModelsResponse lm = OPTIMIZED_LIPSYNCSRV__LIST_MODELS_RESPONSE__INIT;
    lm.n_loaded_models = 5;
    lm.loaded_models = names;
    lm.count = 5;
    uint8_t buf[256];
    size_t n = optimized_lipsyncsrv__list_models_response__pack(&lm, buf);
    long m = lip_auth_pb_filter(buf, n, 1, 0, 2, keep_ab, NULL);
    CHECK(m > 0 && (size_t)m < n);
    OptimizedLipsyncsrv__ListModelsResponse *o =
        optimized_lipsyncsrv__list_models_response__unpack(NULL, (size_t)m, buf);
    CHECK(o != NULL);
    if (o) {
        CHECK(o->n_loaded_models == 3 && o->count == 3);
        CHECK(o->n_loaded_models == 3 && !strcmp(o->loaded_models[0], "a") &&
              !strcmp(o->loaded_models[1], "b") && !strcmp(o->loaded_models[2], "a"));
        optimized_lipsyncsrv__list_models_response__free_unpacked(o, NULL);
    }
    /* v1 ListAvatarsResponse: repeated AvatarInfo avatars = 1 (id = 1), default_avatar = 2,
     * tts_available = 3. */
    Lipsync__V1__AvatarInfo ai[3];
    Lipsync__V1__AvatarInfo *ap[3];
    const char *ids[] = {"z", "b", "a"};
    for (int i = 0; i < 3; i++) {
        Lipsync__V1__AvatarInfo i0 = LIPSYNC__V1__AVATAR_INFO__INIT;
        ai[i] = i0;
        ai[i].id = (char *)ids[i];
        ai[i].frame_count = 10 + i;
        ap[i] = &ai[i];
    }
    Lipsync__V1__ListAvatarsResponse la = LIPSYNC__V1__LIST_AVATARS_RESPONSE__INIT;
    la.n_avatars = 3;
    la.avatars = ap;
    la.default_avatar = "z";
    la.tts_available = true;
    n = lipsync__v1__list_avatars_response__pack(&la, buf);
    m = lip_auth_pb_filter(buf, n, 1, 1, 0, keep_ab, NULL);
    Lipsync__V1__ListAvatarsResponse *r =
        m > 0 ? lipsync__v1__list_avatars_response__unpack(NULL, (size_t)m, buf) : NULL;
    CHECK(r != NULL);
    if (r) {
        CHECK(r->n_avatars == 2 && !strcmp(r->avatars[0]->id, "b") &&
              r->avatars[0]->frame_count == 11 && !strcmp(r->avatars[1]->id, "a"));
        CHECK(!strcmp(r->default_avatar, "z") && r->tts_available);
        lipsync__v1__list_avatars_response__free_unpacked(r, NULL);
    }
    /* Malformed: refused, bytes untouched; nothing kept: an empty message. */
    uint8_t bad[] = {0x0a, 9, 'a'};
    CHECK(lip_auth_pb_filter(bad, sizeof bad, 1, 0, 0, keep_ab, NULL) == LIP_EFORMAT);
    CHECK(bad[0] == 0x0a && bad[1] == 9);
    uint8_t none[] = {0x0a, 1, 'q', 0x0a, 1, 'r'};
    CHECK(lip_auth_pb_filter(none, sizeof none, 1, 0, 0, keep_ab, NULL) == 0);
}

static void t_bucket(void)
{
    lip_auth_bucket b;
    double retry = -1;
    /* 10 frames/s, bucket of 20 at t=0. */
    lip_auth_bucket_init(&b, 20, 0);
    CHECK(lip_auth_bucket_admit(&b, 10, 20, 0, &retry) && retry == 0);
    lip_auth_bucket_charge(&b, 32); /* a batch bigger than the bucket still runs: debt 12 */
    CHECK(!lip_auth_bucket_admit(&b, 10, 20, 0, &retry));
    /* 12 frames of debt at 10/s: 1.2 s, plus the 1 ms floor. Exact arithmetic on doubles
     * that are multiples of 1/8 ms, so 1e-9 covers rounding only. */
    CHECK_NEAR(retry, 1201.0, 1e-9);
    CHECK(!lip_auth_bucket_admit(&b, 10, 20, 1000, &retry)); /* -2 after 1 s */
    CHECK_NEAR(retry, 201.0, 1e-9);
    CHECK(lip_auth_bucket_admit(&b, 10, 20, 1250, &retry)); /* +0.5 */
    /* Refill is capped at the bucket size. */
    CHECK(lip_auth_bucket_admit(&b, 10, 20, 1e6, &retry));
    CHECK_NEAR(b.tokens, 20.0, 1e-9);
    /* Rate 0 is unlimited whatever the balance. */
    lip_auth_bucket_charge(&b, 1e6);
    CHECK(lip_auth_bucket_admit(&b, 0, 20, 1e6, &retry) && retry == 0);
    /* Time going backwards (never with a monotonic clock) does not refill or crash. */
    lip_auth_bucket_init(&b, 5, 100);
    lip_auth_bucket_charge(&b, 10);
    CHECK(!lip_auth_bucket_admit(&b, 1, 5, 50, &retry) && retry > 0);
}

static const char *good_keys =
    "{\"keys\": ["
    "{\"id\": \"acme\", \"sha256\": "
    "\"4f9ecd7de7d4a8e9c8a5ff6dcc6c1e7b1e5e8e8c4d5b5a19a2b0a9f2c5b1c2d3\", \"role\": \"client\","
    " \"avatars\": [\"t1\", \"t3\"]},"
    "{\"id\": \"ops\", \"sha256\": \"%s\", \"role\": \"admin\", \"avatars\": \"*\","
    " \"frames_per_second\": 50, \"max_concurrent\": 2, \"description\": \"operators\"}"
    "]}";

static lip_auth *new_auth(const char *text, lip_err *err)
{
    write_file(keys_path, text);
    lip_auth_opts o = lip_auth_opts_default();
    o.keys_file = keys_path;
    o.default_avatar = "t1";
    char audit[160];
    snprintf(audit, sizeof audit, "%s/audit.log", dir);
    o.audit_file = audit;
    return lip_auth_new(&o, err);
}

static void t_store(void)
{
    char hex[65], doc[1024];
    lip_auth_hash_hex("ops-secret", 10, hex);
    snprintf(doc, sizeof doc, good_keys, hex);
    lip_err err = {0};
    lip_auth *a = new_auth(doc, &err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    if (!a) return;
    CHECK(lip_auth_key_count(a) == 2);
    lip_auth_principal p;
    CHECK(lip_auth_lookup(a, "ops-secret", &p) == 0 && strcmp(p.id, "ops") == 0 &&
          p.role == LIP_AUTH_ADMIN && p.all_avatars);
    CHECK(lip_auth_lookup(a, "ops-secreT", &p) == LIP_EPERM);
    CHECK(lip_auth_lookup(a, "", &p) == LIP_EPERM);
    CHECK(lip_auth_avatar_allowed(a, "acme", "t1") && lip_auth_avatar_allowed(a, "acme", "t3"));
    CHECK(!lip_auth_avatar_allowed(a, "acme", "t2"));
    CHECK(!lip_auth_avatar_allowed(a, "acme", "t")); /* exact match, not a prefix */
    CHECK(lip_auth_avatar_allowed(a, "ops", "anything"));
    CHECK(!lip_auth_avatar_allowed(a, "nobody", "t1"));

    /* A broken file on reload: the old keys stay. */
    write_file(keys_path, "{\"keys\": [");
    CHECK(lip_auth_reload(a, &err) != 0 && strstr(err.msg, keys_path));
    CHECK(lip_auth_lookup(a, "ops-secret", &p) == 0);
    /* A good reload: ops gone, new key in. */
    char hex2[65];
    lip_auth_hash_hex("new", 3, hex2);
    snprintf(doc, sizeof doc, "{\"keys\": [{\"id\": \"n\", \"sha256\": \"%s\", \"avatars\": "
             "[]}]}", hex2);
    write_file(keys_path, doc);
    CHECK_RC(lip_auth_reload(a, &err));
    CHECK(lip_auth_lookup(a, "ops-secret", &p) == LIP_EPERM);
    CHECK(lip_auth_lookup(a, "new", &p) == 0 && p.role == LIP_AUTH_CLIENT && !p.all_avatars);
    CHECK(!lip_auth_avatar_allowed(a, "n", "t1")); /* an empty list allows none */
    lip_auth_free(a);
    lip_auth_free(NULL);
}

/* Every malformed keys file is refused with a message naming what is wrong. */
static void t_bad_files(void)
{
    char h[65];
    lip_auth_hash_hex("k", 1, h);
    static const struct {
        const char *fmt, *expect;
    } cases[] = {
        {"not json", "not valid JSON"},
        {"[]", "expected a JSON object"},
        {"{\"keys\": [], \"extra\": 1}", "unknown top-level field 'extra'"},
        {"{\"keys\": [{\"id\": \"a b\", \"sha256\": \"%s\", \"avatars\": \"*\"}]}", "id must be"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"abc\", \"avatars\": \"*\"}]}", "sha256 must"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": "
         "\"zz9ecd7de7d4a8e9c8a5ff6dcc6c1e7b1e5e8e8c4d5b5a19a2b0a9f2c5b1c2d3\", "
         "\"avatars\": \"*\"}]}", "not hex"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\", \"role\": \"root\", \"avatars\": "
         "\"*\"}]}", "role must be"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\"}]}", "avatars must be"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\", \"avatars\": [\"../x\"]}]}",
         "avatar ids"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\", \"avatars\": \"*\", "
         "\"frames_per_second\": -1}]}", "frames_per_second must be"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\", \"avatars\": \"*\", \"secret\": "
         "\"x\"}]}", "unknown field secret"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\", \"avatars\": \"*\"}, {\"id\": \"a\", "
         "\"sha256\": \"%s\", \"avatars\": \"*\"}]}", "id used twice"},
        {"{\"keys\": [{\"id\": \"a\", \"sha256\": \"%s\", \"avatars\": \"*\"}, {\"id\": \"b\", "
         "\"sha256\": \"%s\", \"avatars\": \"*\"}]}", "same secret as key a"},
    };
    for (size_t i = 0; i < LIP_ARRAY_LEN(cases); i++) {
        char doc[1024];
        snprintf(doc, sizeof doc, cases[i].fmt, h, h);
        lip_err err = {0};
        lip_auth *a = new_auth(doc, &err);
        CHECK_MSG(!a && strstr(err.msg, cases[i].expect), "case %zu: '%s' lacks '%s'", i,
                  err.msg, cases[i].expect);
        lip_auth_free(a);
    }
    /* No keys file at all. */
    lip_auth_opts o = lip_auth_opts_default();
    lip_err err = {0};
    CHECK(lip_auth_new(&o, &err) == NULL && strstr(err.msg, "no keys file"));
    o.keys_file = "/nonexistent/keys.json";
    CHECK(lip_auth_new(&o, &err) == NULL && strstr(err.msg, "/nonexistent/keys.json"));
}

/* Many keys: loading sorts them (no quadratic duplicate checks) and every one is found; a
 * duplicate far apart in the file is still caught and named by its own index. */
static void t_many_keys(void)
{
    enum { N = 5000 };
    size_t cap = (size_t)N * 160 + 64, at = 0;
    char *doc = lip_malloc(cap);
    if (!doc) return;
    at += (size_t)snprintf(doc + at, cap - at, "{\"keys\": [");
    for (int i = 0; i < N; i++) {
        char key[32], hex[65];
        int kl = snprintf(key, sizeof key, "secret-%d", i);
        lip_auth_hash_hex(key, (size_t)kl, hex);
        at += (size_t)snprintf(doc + at, cap - at, "%s{\"id\": \"k%d\", \"sha256\": \"%s\", "
                               "\"avatars\": [\"a%d\"]}", i ? "," : "", i, hex, i);
    }
    snprintf(doc + at, cap - at, "]}");
    lip_err err = {0};
    double t0 = lip_time_ms();
    lip_auth *a = new_auth(doc, &err);
    double ms = lip_time_ms() - t0;
    CHECK_MSG(a != NULL, "%s", err.msg);
    printf("# %d keys loaded in %.1f ms\n", N, ms);
    lip_auth_principal p;
    for (int i = 0; a && i < N; i += 499) {
        char key[32], id[16];
        snprintf(key, sizeof key, "secret-%d", i);
        snprintf(id, sizeof id, "k%d", i);
        CHECK_MSG(lip_auth_lookup(a, key, &p) == 0 && strcmp(p.id, id) == 0, "key %d", i);
    }
    CHECK(a && lip_auth_lookup(a, "secret-5000", &p) == LIP_EPERM);
    lip_auth_free(a);
    /* The last key reuses the first key's id: reported at index N - 1. */
    char *last = strrchr(doc, '{');
    char hex[65];
    lip_auth_hash_hex("other", 5, hex);
    snprintf(last, cap - (size_t)(last - doc), "{\"id\": \"k0\", \"sha256\": \"%s\", "
             "\"avatars\": []}]}", hex);
    a = new_auth(doc, &err);
    char want[64];
    snprintf(want, sizeof want, "keys[%d] (id 'k0'): id used twice", N - 1);
    CHECK_MSG(!a && strstr(err.msg, want), "%s", err.msg);
    lip_auth_free(a);
    lip_free(doc);
}

/* ---- the guard on a real rpc server ------------------------------------------------------- */

static atomic_int handler_calls;

static int h_echo(void *ud, lip_rpc_call *call, const uint8_t *req, size_t len, lip_rpc_buf *resp,
                  lip_err *err)
{
    (void)ud;
    (void)call;
    (void)err;
    atomic_fetch_add(&handler_calls, 1);
    resp->data = lip_malloc(len ? len : 1);
    if (!resp->data) return LIP_ENOMEM;
    if (len) memcpy(resp->data, req, len);
    resp->len = len;
    return 0;
}

/* One unary call with key (NULL = none); returns the status code. */
static int call_with(const char *target, const char *key, const char *path, const char *avatar,
                     char *details, size_t n)
{
    lip_rpc_client_opts o = lip_rpc_client_opts_default();
    o.api_key = key;
    lip_err err = {0};
    lip_rpc_client *c = lip_rpc_client_new_opts(target, &o, &err);
    if (!c) return -1;
    uint8_t req[80] = {0x0a, (uint8_t)strlen(avatar)};
    memcpy(req + 2, avatar, strlen(avatar));
    lip_rpc_buf resp = {0};
    lip_rpc_status st = {0};
    int rc = lip_rpc_client_unary(c, path, req, 2 + strlen(avatar), 10000, &resp, &st, &err);
    lip_free(resp.data);
    lip_rpc_client_free(c);
    if (details) lip_strlcpy(details, st.details, n);
    return rc ? -1 : (int)st.code;
}

/* The guard refuses before any handler runs: no key, unknown key, other tenant's avatar, an
 * RPC missing from the policy table for a client key; and lets the right calls through. */
static void t_guard(void)
{
    char hex[65], hex2[65], doc[1024];
    lip_auth_hash_hex("ops-secret", 10, hex);
    lip_auth_hash_hex("acme-secret", 11, hex2);
    snprintf(doc, sizeof doc, "{\"keys\": [{\"id\": \"ops\", \"sha256\": \"%s\", \"role\": "
             "\"admin\", \"avatars\": \"*\"}, {\"id\": \"acme\", \"sha256\": \"%s\", "
             "\"avatars\": [\"t1\"]}]}", hex, hex2);
    lip_err err = {0};
    lip_auth *a = new_auth(doc, &err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    lip_rpc_opts o = lip_rpc_opts_default();
    o.host = "127.0.0.1";
    lip_rpc_server *srv = a ? lip_rpc_server_new(&o, &err) : NULL;
    if (!srv) {
        lip_auth_free(a);
        return;
    }
    static const lip_rpc_method scoped[] = {{"GetModelStats", LIP_RPC_UNARY, false, h_echo}};
    static const lip_rpc_method other[] = {{"Echo", LIP_RPC_UNARY, false, h_echo}};
    CHECK_RC(lip_rpc_server_add_service(srv, "compositing.CompositingService", scoped, 1, NULL,
                                        &err));
    CHECK_RC(lip_rpc_server_add_service(srv, "test.T", other, 1, NULL, &err));
    CHECK_RC(lip_auth_attach(a, srv, &err));
    CHECK_RC(lip_rpc_server_start(srv, &err));
    CHECK(lip_auth_attach(a, srv, &err) == LIP_EINVAL); /* not after start */
    char target[64], d[LIP_ERRMSG_MAX];
    snprintf(target, sizeof target, "127.0.0.1:%d", lip_rpc_server_port(srv));
    const char *stats = "/compositing.CompositingService/GetModelStats";
    atomic_store(&handler_calls, 0);
    CHECK(call_with(target, NULL, stats, "t1", d, sizeof d) == GRPC_STATUS_UNAUTHENTICATED);
    CHECK(call_with(target, "nope", stats, "t1", d, sizeof d) == GRPC_STATUS_UNAUTHENTICATED);
    CHECK(call_with(target, "acme-secret", stats, "t2", d, sizeof d) ==
          GRPC_STATUS_PERMISSION_DENIED);
    CHECK_MSG(strstr(d, "'acme'") && strstr(d, "'t2'") && !strstr(d, "acme-secret"), "%s", d);
    CHECK(call_with(target, "acme-secret", "/test.T/Echo", "t1", d, sizeof d) ==
          GRPC_STATUS_PERMISSION_DENIED);
    CHECK(atomic_load(&handler_calls) == 0); /* no refused call reached the handler */
    CHECK(call_with(target, "acme-secret", stats, "t1", d, sizeof d) == GRPC_STATUS_OK);
    CHECK(call_with(target, "ops-secret", "/test.T/Echo", "x", d, sizeof d) == GRPC_STATUS_OK);
    CHECK(call_with(target, "ops-secret", stats, "t2", d, sizeof d) == GRPC_STATUS_OK);
    CHECK(atomic_load(&handler_calls) == 3);
    /* grpc.health.v1 stays open. */
    lip_rpc_server_set_health(srv, "", LIP_HEALTH_SERVING);
    CHECK(call_with(target, NULL, "/grpc.health.v1.Health/Check", "", d, sizeof d) ==
          GRPC_STATUS_OK);
    lip_rpc_server_free(srv);
    lip_auth_free(a);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        printf("# cannot create a temporary directory\n");
        return 1;
    }
    snprintf(keys_path, sizeof keys_path, "%s/keys.json", dir);
    RUN(t_hash);
    RUN(t_wire);
    RUN(t_filter);
    RUN(t_bucket);
    RUN(t_store);
    RUN(t_bad_files);
    RUN(t_many_keys);
    RUN(t_guard);
    char audit[160];
    snprintf(audit, sizeof audit, "%s/audit.log", dir);
    unlink(audit);
    unlink(keys_path);
    rmdir(dir);
    return test_summary();
}
