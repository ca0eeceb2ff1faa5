/* SPDX-License-Identifier: MIT */
/* service/listing.c: ListModels and GetModelStats of the monolithic, compositing and inference
 * services, and LoadModel of compositing and inference (answered with the loaded model's stats).
 * Their messages differ per service (each has its own ModelInfo or ModelStats; only some
 * requests name a model_id, only some responses carry registry totals), so one handler per RPC
 * walks the registry and builds the response through the service's descriptors, and a
 * per-service callback fills the message of each listed model. */
#include "service/svc_int.h"

#include <string.h>

static const ProtobufCFieldDescriptor *field(const ProtobufCMessageDescriptor *d, const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

/* The storage of msg's (type d) singular field name when it has type t, else NULL. */
static void *member(const ProtobufCMessageDescriptor *d, const void *msg, const char *name,
                    ProtobufCType t)
{
    const ProtobufCFieldDescriptor *f = field(d, name);
    if (!f || f->type != t || f->label == PROTOBUF_C_LABEL_REPEATED) return NULL;
    return (char *)(uintptr_t)msg + f->offset;
}

/* Sets the int32 or int64 field name of msg (type d) to v; no such field: nothing. */
static void set_int(const ProtobufCMessageDescriptor *d, void *msg, const char *name, int64_t v)
{
    const ProtobufCFieldDescriptor *f = field(d, name);
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED) return;
    void *p = (char *)msg + f->offset;
    if (f->type == PROTOBUF_C_TYPE_INT32)
        *(int32_t *)p = (int32_t)v;
    else if (f->type == PROTOBUF_C_TYPE_INT64)
        *(int64_t *)p = v;
    else
        return;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        *(protobuf_c_boolean *)(void *)((char *)msg + f->quantifier_offset) = 1;
}

/* Builds and packs response rd for the models ms[0..n) (sorted by id): those with id `only`,
 * or all when only is "". */
static int build(lip_service *sv, const ProtobufCMessageDescriptor *rd, const lip_model_stats *ms,
                 int n, const char *only, svc_model_fill_fn fill, size_t slot_size,
                 lip_rpc_buf *resp, lip_err *err)
{
    const ProtobufCFieldDescriptor *fm = field(rd, "models");
    if (!fm || fm->label != PROTOBUF_C_LABEL_REPEATED || fm->type != PROTOBUF_C_TYPE_MESSAGE)
        return lip_err_set(err, LIP_EINTERNAL, "%s has no repeated message field models",
                           rd->name);
    char *slots = lip_calloc((size_t)n + 1, slot_size);
    ProtobufCMessage **ptrs = lip_calloc((size_t)n + 1, sizeof *ptrs);
    ProtobufCMessage *o = lip_calloc(1, rd->sizeof_message);
    int rc = 0, k = 0;
    int64_t total = 0; /* every configured model, listed or not */
    if (!slots || !ptrs || !o) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory listing models");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const lip_model_stats *m = &ms[i];
        total += (int64_t)m->memory_bytes;
        if (only[0] && strcmp(m->id, only) != 0) continue;
        ptrs[k] = fill(m, slots + (size_t)k * slot_size);
        if (ptrs[k]->descriptor != fm->descriptor) {
            rc = lip_err_set(err, LIP_EINTERNAL, "%s.models: filled a %s", rd->name,
                             ptrs[k]->descriptor->name);
            goto out;
        }
        k++;
    }
    rd->message_init(o);
    *(size_t *)(void *)((char *)o + fm->quantifier_offset) = (size_t)k;
    *(ProtobufCMessage ***)(void *)((char *)o + fm->offset) = ptrs;
    if (field(rd, "loaded_models")) {
        lip_registry_totals tot;
        svc_totals(sv, &tot);
        set_int(rd, o, "max_models", sv->o.max_models);
        set_int(rd, o, "loaded_models", tot.loaded);
        set_int(rd, o, "total_memory_bytes", total);
        set_int(rd, o, "max_memory_bytes", (int64_t)tot.max_memory_bytes);
    }
    rc = lip_rpc_pack(o, resp, err);
out:
    lip_free(slots);
    lip_free(ptrs);
    lip_free(o);
    return rc;
}

int svc_list_rpc(lip_service *sv, const ProtobufCMessageDescriptor *qd,
                 const ProtobufCMessageDescriptor *rd, svc_model_fill_fn fill, size_t slot_size,
                 const uint8_t *req, size_t len, lip_rpc_buf *resp, lip_err *err)
{
    ProtobufCMessage *q = svc_unpack(qd, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    const ProtobufCFieldDescriptor *f = field(qd, "model_id");
    const char *name = f && f->type == PROTOBUF_C_TYPE_STRING
                           ? *(char *const *)(const void *)((const char *)q + f->offset)
                           : "";
    char only[72], id[72] = "";
    /* One that does not fit here is INVALID_ARGUMENT; 65-71 characters svc_resolve reports as
     * malformed. */
    bool too_long = lip_strlcpy(only, name ? name : "", sizeof only) >= sizeof only;
    protobuf_c_message_free_unpacked(q, NULL);
    int rc = 0;
    if (too_long)
        rc = lip_err_set(err, LIP_EINVAL, "model_id longer than 64 characters");
    else if (only[0])
        rc = svc_resolve(sv, only, id, err);
    if (rc) return svc_fail(rd, err, resp);
    lip_model_stats *ms = NULL;
    int n = 0;
    if (svc_list(sv, &ms, &n))
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory listing models");
    else
        rc = build(sv, rd, ms, n, id, fill, slot_size, resp, err);
    lip_free(ms);
    return rc ? svc_fail(rd, err, resp) : 0;
}

int svc_load_rpc(lip_service *sv, const ProtobufCMessageDescriptor *qd,
                 const ProtobufCMessageDescriptor *rd, svc_model_fill_fn fill, size_t slot_size,
                 const uint8_t *req, size_t len, lip_rpc_buf *resp, lip_err *err)
{
    ProtobufCMessage *q = svc_unpack(qd, req, len, err);
    if (!q) return svc_fail(rd, err, resp);
    char *const *name = member(qd, q, "model_id", PROTOBUF_C_TYPE_STRING);
    const protobuf_c_boolean *force = member(qd, q, "force_reload", PROTOBUF_C_TYPE_BOOL);
    bool reload = force && *force;
    char id[72];
    int rc = svc_resolve(sv, name && *name ? *name : "", id, err);
    protobuf_c_message_free_unpacked(q, NULL);
    double ms = 0;
    bool was = false;
    if (!rc) rc = svc_load(sv, id, reload, &ms, &was, err);
    if (rc) return svc_fail(rd, err, resp);
    ProtobufCMessage *o = lip_calloc(1, rd->sizeof_message);
    void *slot = lip_calloc(1, slot_size);
    if (!o || !slot) {
        rc = lip_err_set(err, LIP_ENOMEM, "out of memory");
        goto out;
    }
    rd->message_init(o);
    /* stats: the one of the model's listing entry (ModelInfo.stats), when it has one */
    ProtobufCMessage **stats = member(rd, o, "stats", PROTOBUF_C_TYPE_MESSAGE);
    lip_model_stats m;
    if (stats && !svc_stats(sv, id, &m)) {
        ProtobufCMessage *info = fill(&m, slot);
        ProtobufCMessage *const *st = member(info->descriptor, info, "stats",
                                             PROTOBUF_C_TYPE_MESSAGE);
        if (st && *st && (*st)->descriptor == field(rd, "stats")->descriptor) *stats = *st;
    }
    protobuf_c_boolean *ok = member(rd, o, "success", PROTOBUF_C_TYPE_BOOL);
    float *load_ms = member(rd, o, "load_time_ms", PROTOBUF_C_TYPE_FLOAT);
    if (ok) *ok = 1;
    if (load_ms) *load_ms = was ? 0.0f : (float)ms;
    rc = lip_rpc_pack(o, resp, err);
out:
    lip_free(o);
    lip_free(slot);
    return rc ? svc_fail(rd, err, resp) : 0;
}
