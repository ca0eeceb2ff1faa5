/* SPDX-License-Identifier: MIT */
/* fuzz_proto: protobuf-c unpacking of every request message of every service (the generated
 * build/gen/<proto>.pb-c.h; the list is made at build time from those headers, so a new request
 * message is fuzzed without editing this file). The first input byte picks the message, the
 * rest is the wire data. A message that unpacks is packed again: the packed size must match
 * what get_packed_size promised, and the packed bytes must unpack. */
#include "fuzz.h"

#include <protobuf-c/protobuf-c.h>
#include <string.h>

#define X(name) extern const ProtobufCMessageDescriptor name;
#include "proto_requests.h"
#undef X

static const ProtobufCMessageDescriptor *const descs[] = {
#define X(name) &name,
#include "proto_requests.h"
#undef X
};

FUZZ_QUIET_INIT

/* True if m or any message inside it kept unknown fields (see the round-trip note below). */
static int has_unknown(const ProtobufCMessage *m, int depth)
{
    if (!m) return 0;
    if (m->n_unknown_fields) return 1;
    if (depth > 64) return 1; /* deeper than any real request; treat as unknown */
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (has_unknown(arr[k], depth + 1)) return 1;
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue; /* another member of the oneof is set: this pointer is not ours */
        if (has_unknown(*(ProtobufCMessage *const *)(base + f->offset), depth + 1)) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = descs[data[0] % LIP_ARRAY_LEN(descs)];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m) return 0;
    if (!protobuf_c_message_check(m)) abort(); /* unpack accepted something malformed */
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    if (protobuf_c_message_pack(m, buf) != n) abort();
    /* The repacked bytes unpack again, except when unknown fields were kept at any depth:
     * protobuf-c accepts field number 0 in an over-long tag (80 00) as an unknown field but
     * rejects the short tag it packs it back as (fuzz/crashes/proto/protobuf-c-field0-*.bin).
     * The server never re-packs a request, so only the known-field round trip is checked. */
    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n, buf);
    if (!m2 && !has_unknown(m, 0)) abort();
    if (m2) protobuf_c_message_free_unpacked(m2, NULL);
    free(buf);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
