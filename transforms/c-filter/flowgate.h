// flowgate.h: a small layer over the `wit-bindgen c` bindings of `flowgate:transform@0.2.0`, so that a transform
// in C reads and changes flows by field and never touches the `batch` resource, its columns or the canonical ABI
// ownership rules.
//
// A transform defines two functions and links flowgate.c (which defines the generated exports):
//
//     bool fg_init(fg_config *config);   // read config with fg_config_*; return fg_fail(config, ...) to refuse
//     void fg_process(fg_batch *batch);  // every flow is kept unless fg_drop / fg_error / fg_attr_* say otherwise
//
// Reading. `fg_source_namespace(b, i)`, `fg_dest_port(b, i)`, `fg_action(b, i)`, ... one getter per field of the
// WIT `flow` record. The first read of a field fetches that field for every flow of the batch in one host call
// (a column) and caches it; later reads of any flow cost nothing. Columns are freed when `fg_process` returns.
// `fg_len(b)` is fetched once, when the batch is opened. Label and policy lists are fetched per flow and
// field, on first read, and cached the same way; `fg_record(b, i)` fetches one whole flow.
//
// Strings. A string getter returns an `fg_str` view: `ptr` + `len`, and `ptr` is also NUL-terminated (so it can
// go straight to fnmatch, strcmp, printf). When a string column is fetched, its distinct values (a few dozen
// for a batch of hundreds of flows) are copied once, NUL-terminated, into one buffer; every flow sharing a
// value gets the same pointer. Views are valid until `fg_process` returns: copy what you keep.
// `fg_strings(b, field)` exposes the column itself (distinct `values`, per-flow index `at`) so a decision can
// be made once per distinct value (see filter.c). A setter on that field appends to `values`, which may move
// it: read it through the returned pointer again rather than keeping `col->values` in a variable.
//
// Changing. `fg_set_source_name(b, i, "x")`, `fg_set_dest_port(b, i, 443)`, ... call the host's typed setter
// at once (the host applies the change when the batch returns, unless the flow is dropped or fails) and
// update the cache, so getters (and `fg_strings`) show your own changes, as the other SDKs do. A setter on a
// field not read yet does not fetch it. Exception: `fg_record` always returns the flow as it entered.
//
// Outcomes. Every flow starts as `keep`. `fg_drop`, `fg_error`, `fg_keep`; `fg_attr_str` / `_int` /
// `_float` / `_bool`, `fg_severity`, `fg_body_text`, `fg_body_attributes` turn a kept flow into `annotate`.
// `fg_outcome(b, i)` gives the raw generated outcome for anything else (`expand`): whatever it points to
// must be malloc'd, it is freed by the generated post-return code.
//
// Config. `fg_config_get` / `fg_config_list` remember which keys were read; when `fg_init` returns true, any
// key of the config that was never read refuses the component:
//     unknown config key "drop_namespace"; this transform reads: actions, drop_namespaces, ports
// so read every key you accept, even when you do not need its value.
//
// Positions out of range (i >= fg_len(b)) abort, as the host would trap.
#ifndef FLOWGATE_H
#define FLOWGATE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transformer.h"

// ---- Types --------------------------------------------------------------------------------------------------

// A string view: NUL-terminated at ptr[len]; valid until fg_process returns.
typedef struct fg_str {
  const char *ptr;
  size_t len;
} fg_str;

// A label list: `key=value` strings.
typedef struct fg_strs {
  const fg_str *ptr;
  size_t len;
} fg_strs;

// A string column: flow i's value is values[at[i]]; `n_values` distinct values (your own changes appended).
typedef struct fg_column {
  const fg_str *values;
  size_t n_values;
  const uint32_t *at;
  size_t len;
} fg_column;

typedef flowgate_transform_types_policy_hit_t fg_policy_hit;  // strings are ptr+len, not NUL-terminated
typedef struct fg_policies {
  const fg_policy_hit *ptr;
  size_t len;
} fg_policies;
typedef flowgate_transform_types_flow_t fg_flow;
typedef flowgate_transform_types_outcome_t fg_outcome_t;

typedef flowgate_transform_types_action_t fg_action_t;
#define FG_ACTION_UNSPECIFIED FLOWGATE_TRANSFORM_TYPES_ACTION_UNSPECIFIED
#define FG_ALLOW FLOWGATE_TRANSFORM_TYPES_ACTION_ALLOW
#define FG_DENY FLOWGATE_TRANSFORM_TYPES_ACTION_DENY
#define FG_PASS FLOWGATE_TRANSFORM_TYPES_ACTION_PASS
#define FG_ACTION_UNKNOWN FLOWGATE_TRANSFORM_TYPES_ACTION_UNKNOWN

typedef flowgate_transform_types_reporter_t fg_reporter_t;
#define FG_REPORTER_UNSPECIFIED FLOWGATE_TRANSFORM_TYPES_REPORTER_UNSPECIFIED
#define FG_SRC FLOWGATE_TRANSFORM_TYPES_REPORTER_SRC
#define FG_DST FLOWGATE_TRANSFORM_TYPES_REPORTER_DST
#define FG_REPORTER_UNKNOWN FLOWGATE_TRANSFORM_TYPES_REPORTER_UNKNOWN

typedef flowgate_transform_types_endpoint_type_t fg_endpoint_type_t;
#define FG_ENDPOINT_UNSPECIFIED FLOWGATE_TRANSFORM_TYPES_ENDPOINT_TYPE_UNSPECIFIED
#define FG_WORKLOAD_ENDPOINT FLOWGATE_TRANSFORM_TYPES_ENDPOINT_TYPE_WORKLOAD_ENDPOINT
#define FG_HOST_ENDPOINT FLOWGATE_TRANSFORM_TYPES_ENDPOINT_TYPE_HOST_ENDPOINT
#define FG_NETWORK_SET FLOWGATE_TRANSFORM_TYPES_ENDPOINT_TYPE_NETWORK_SET
#define FG_NETWORK FLOWGATE_TRANSFORM_TYPES_ENDPOINT_TYPE_NETWORK
#define FG_ENDPOINT_UNKNOWN FLOWGATE_TRANSFORM_TYPES_ENDPOINT_TYPE_UNKNOWN

typedef flowgate_transform_types_severity_t fg_severity_t;
#define FG_TRACE FLOWGATE_TRANSFORM_TYPES_SEVERITY_TRACE
#define FG_DEBUG FLOWGATE_TRANSFORM_TYPES_SEVERITY_DEBUG
#define FG_INFO FLOWGATE_TRANSFORM_TYPES_SEVERITY_INFO
#define FG_WARN FLOWGATE_TRANSFORM_TYPES_SEVERITY_WARN
#define FG_ERROR FLOWGATE_TRANSFORM_TYPES_SEVERITY_ERROR
#define FG_FATAL FLOWGATE_TRANSFORM_TYPES_SEVERITY_FATAL

// Field names: the WIT field enums.
typedef flowgate_transform_types_string_field_t fg_string_field;
typedef flowgate_transform_types_int_field_t fg_int_field;
typedef flowgate_transform_types_endpoint_field_t fg_endpoint_field;
typedef flowgate_transform_types_labels_field_t fg_labels_field;
typedef flowgate_transform_types_policies_field_t fg_policies_field;

typedef struct fg_batch fg_batch;
typedef struct fg_config fg_config;

// ---- What a transform defines -------------------------------------------------------------------------------

bool fg_init(fg_config *config);
void fg_process(fg_batch *batch);

// ---- Config -------------------------------------------------------------------------------------------------

// The value of `key` (the last one if repeated), NUL-terminated, or NULL when absent. Marks `key` as read.
const char *fg_config_get(fg_config *c, const char *key);

// A comma-separated value split into trimmed (spaces), non-empty items; empty when absent. Marks `key` as
// read. Items are owned by the config and freed after fg_init: copy what you keep.
typedef struct fg_list {
  char **items;
  size_t len;
} fg_list;
fg_list fg_config_list(fg_config *c, const char *key);

// Refuses the component with a printf-formatted message (the first failure wins); returns false so that
// `return fg_fail(c, "...", ...);` ends fg_init.
bool fg_fail(fg_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- Batch --------------------------------------------------------------------------------------------------

uint32_t fg_len(const fg_batch *b);

fg_str fg_string(fg_batch *b, fg_string_field field, uint32_t i);
const fg_column *fg_strings(fg_batch *b, fg_string_field field);
int64_t fg_int(fg_batch *b, fg_int_field field, uint32_t i);
fg_action_t fg_action(fg_batch *b, uint32_t i);
fg_reporter_t fg_reporter(fg_batch *b, uint32_t i);
fg_endpoint_type_t fg_endpoint_type(fg_batch *b, fg_endpoint_field field, uint32_t i);
fg_strs fg_labels(fg_batch *b, fg_labels_field field, uint32_t i);
fg_policies fg_policies_of(fg_batch *b, fg_policies_field field, uint32_t i);
// The whole flow as it entered this transform (not showing your changes); cached per flow.
const fg_flow *fg_record(fg_batch *b, uint32_t i);

void fg_set_string(fg_batch *b, fg_string_field field, uint32_t i, const char *value);
void fg_set_string_n(fg_batch *b, fg_string_field field, uint32_t i, const char *value, size_t len);
void fg_set_int(fg_batch *b, fg_int_field field, uint32_t i, int64_t value);
void fg_set_action(fg_batch *b, uint32_t i, fg_action_t value);
void fg_set_reporter(fg_batch *b, uint32_t i, fg_reporter_t value);
void fg_set_endpoint_type(fg_batch *b, fg_endpoint_field field, uint32_t i, fg_endpoint_type_t value);
void fg_set_labels(fg_batch *b, fg_labels_field field, uint32_t i, const char *const *labels, size_t n);
// Policy hits are copied; `unknown` kinds and actions keep the host's number of the hit at the same position.
void fg_set_policies(fg_batch *b, fg_policies_field field, uint32_t i, const fg_policy_hit *hits, size_t n);

// One getter and one setter per field of the WIT `flow` record.
#define FG_STRING_ACCESSORS(name, FIELD)                                                                      \
  static inline fg_str fg_##name(fg_batch *b, uint32_t i) {                                                   \
    return fg_string(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_##FIELD, i);                                     \
  }                                                                                                            \
  static inline void fg_set_##name(fg_batch *b, uint32_t i, const char *v) {                                  \
    fg_set_string(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_##FIELD, i, v);                                     \
  }
#define FG_INT_ACCESSORS(name, FIELD)                                                                         \
  static inline int64_t fg_##name(fg_batch *b, uint32_t i) {                                                  \
    return fg_int(b, FLOWGATE_TRANSFORM_TYPES_INT_FIELD_##FIELD, i);                                           \
  }                                                                                                            \
  static inline void fg_set_##name(fg_batch *b, uint32_t i, int64_t v) {                                      \
    fg_set_int(b, FLOWGATE_TRANSFORM_TYPES_INT_FIELD_##FIELD, i, v);                                           \
  }
#define FG_ENDPOINT_ACCESSORS(name, FIELD)                                                                    \
  static inline fg_endpoint_type_t fg_##name(fg_batch *b, uint32_t i) {                                       \
    return fg_endpoint_type(b, FLOWGATE_TRANSFORM_TYPES_ENDPOINT_FIELD_##FIELD, i);                            \
  }                                                                                                            \
  static inline void fg_set_##name(fg_batch *b, uint32_t i, fg_endpoint_type_t v) {                           \
    fg_set_endpoint_type(b, FLOWGATE_TRANSFORM_TYPES_ENDPOINT_FIELD_##FIELD, i, v);                            \
  }
#define FG_LABELS_ACCESSORS(name, FIELD)                                                                      \
  static inline fg_strs fg_##name(fg_batch *b, uint32_t i) {                                                  \
    return fg_labels(b, FLOWGATE_TRANSFORM_TYPES_LABELS_FIELD_##FIELD, i);                                     \
  }                                                                                                            \
  static inline void fg_set_##name(fg_batch *b, uint32_t i, const char *const *v, size_t n) {                 \
    fg_set_labels(b, FLOWGATE_TRANSFORM_TYPES_LABELS_FIELD_##FIELD, i, v, n);                                  \
  }
#define FG_POLICIES_ACCESSORS(name, FIELD)                                                                    \
  static inline fg_policies fg_##name(fg_batch *b, uint32_t i) {                                              \
    return fg_policies_of(b, FLOWGATE_TRANSFORM_TYPES_POLICIES_FIELD_##FIELD, i);                              \
  }                                                                                                            \
  static inline void fg_set_##name(fg_batch *b, uint32_t i, const fg_policy_hit *v, size_t n) {               \
    fg_set_policies(b, FLOWGATE_TRANSFORM_TYPES_POLICIES_FIELD_##FIELD, i, v, n);                              \
  }

FG_STRING_ACCESSORS(source_name, SOURCE_NAME)
FG_STRING_ACCESSORS(source_namespace, SOURCE_NAMESPACE)
FG_ENDPOINT_ACCESSORS(source_type, SOURCE_TYPE)
FG_STRING_ACCESSORS(dest_name, DEST_NAME)
FG_STRING_ACCESSORS(dest_namespace, DEST_NAMESPACE)
FG_ENDPOINT_ACCESSORS(dest_type, DEST_TYPE)
FG_INT_ACCESSORS(dest_port, DEST_PORT)
FG_STRING_ACCESSORS(dest_service_name, DEST_SERVICE_NAME)
FG_STRING_ACCESSORS(dest_service_namespace, DEST_SERVICE_NAMESPACE)
FG_STRING_ACCESSORS(dest_service_port_name, DEST_SERVICE_PORT_NAME)
FG_INT_ACCESSORS(dest_service_port, DEST_SERVICE_PORT)
FG_STRING_ACCESSORS(proto, PROTO)
// fg_reporter / fg_set_reporter and fg_action / fg_set_action are declared above.
FG_POLICIES_ACCESSORS(enforced_policies, ENFORCED_POLICIES)
FG_POLICIES_ACCESSORS(pending_policies, PENDING_POLICIES)
FG_INT_ACCESSORS(start_time, START_TIME)
FG_INT_ACCESSORS(end_time, END_TIME)
FG_LABELS_ACCESSORS(source_labels, SOURCE_LABELS)
FG_LABELS_ACCESSORS(dest_labels, DEST_LABELS)
FG_INT_ACCESSORS(packets_in, PACKETS_IN)
FG_INT_ACCESSORS(packets_out, PACKETS_OUT)
FG_INT_ACCESSORS(bytes_in, BYTES_IN)
FG_INT_ACCESSORS(bytes_out, BYTES_OUT)
FG_INT_ACCESSORS(num_connections_started, NUM_CONNECTIONS_STARTED)
FG_INT_ACCESSORS(num_connections_completed, NUM_CONNECTIONS_COMPLETED)
FG_INT_ACCESSORS(num_connections_live, NUM_CONNECTIONS_LIVE)

// ---- Outcomes -----------------------------------------------------------------------------------------------

void fg_keep(fg_batch *b, uint32_t i);
void fg_drop(fg_batch *b, uint32_t i);
void fg_error(fg_batch *b, uint32_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Annotations (the outcome becomes `annotate`; a later key replaces an earlier one on the host side).
void fg_attr_str(fg_batch *b, uint32_t i, const char *key, const char *value);
void fg_attr_int(fg_batch *b, uint32_t i, const char *key, int64_t value);
void fg_attr_float(fg_batch *b, uint32_t i, const char *key, double value);
void fg_attr_bool(fg_batch *b, uint32_t i, const char *key, bool value);
void fg_severity(fg_batch *b, uint32_t i, fg_severity_t severity);
void fg_body_text(fg_batch *b, uint32_t i, const char *text);
void fg_body_attributes(fg_batch *b, uint32_t i);
// The raw outcome (for `expand`); everything it points to must be malloc'd.
fg_outcome_t *fg_outcome(fg_batch *b, uint32_t i);

// ---- Host ---------------------------------------------------------------------------------------------------

typedef flowgate_transform_host_level_t fg_level_t;
#define FG_LOG_DEBUG FLOWGATE_TRANSFORM_HOST_LEVEL_DEBUG
#define FG_LOG_INFO FLOWGATE_TRANSFORM_HOST_LEVEL_INFO
#define FG_LOG_WARN FLOWGATE_TRANSFORM_HOST_LEVEL_WARN
#define FG_LOG_ERROR FLOWGATE_TRANSFORM_HOST_LEVEL_ERROR

void fg_log(fg_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fg_counter_add(const char *name, uint64_t delta);

// ---- For tests and advanced use ------------------------------------------------------------------------------

// What the generated process export does around fg_process: open (one `len` call), close (frees the caches
// and hands back the outcomes, which the caller owns: `len` entries, NULL when empty).
fg_batch *fg_batch_open(int32_t handle);
fg_outcome_t *fg_batch_close(fg_batch *b, size_t *len);

#endif
