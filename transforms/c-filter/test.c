// Native unit tests of flowgate.c and filter.c, without a WebAssembly runtime: this file implements the imports
// the generated bindings declare (`flowgate_transform_types_method_batch_*`, `flowgate_transform_host_*`) over
// an in-memory batch, counting the calls, and drives the two exports. build.sh compiles it with the host's clang
// (AddressSanitizer and UndefinedBehaviorSanitizer when available, so leaks and double frees fail too) and runs
// it before building the component.
//
// Allocation follows the canonical ABI as cabi_realloc does it: lists handed to the guest are malloc'd, an empty
// list's pointer is its alignment (not a heap pointer), so freeing one would crash here as it would in wasm.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowgate.h"

static int failures;
#define CHECK(cond)                                                                                           \
  do {                                                                                                         \
    if (!(cond)) {                                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                 \
      failures++;                                                                                              \
    }                                                                                                          \
  } while (0)
#define CHECK_STR(got, want)                                                                                  \
  do {                                                                                                         \
    const char *g_ = (got), *w_ = (want);                                                                      \
    if (!g_ || strcmp(g_, w_)) {                                                                               \
      fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, g_ ? g_ : "(null)", w_);        \
      failures++;                                                                                              \
    }                                                                                                          \
  } while (0)

// ---- The fake host ------------------------------------------------------------------------------------------

#define HANDLE 7
#define MAX_FLOWS 16

typedef struct {
  const char *strings[8];
  int64_t ints[11];
  uint8_t action, reporter, types[2];
  const char *labels[2][3];
  size_t n_labels[2];
  size_t n_policies[2];
} fake_flow;

static fake_flow flows[MAX_FLOWS];
static uint32_t n_flows;

static struct {
  int len, strings[8], ints[11], actions, reporters, endpoints[2], labels, policies, record;
  int set_string, set_int, set_action, set_reporter, set_endpoint, set_labels, set_policies, drop;
} calls;

// The last setter call.
static struct {
  uint32_t flow;
  int field;
  char value[64];
  int64_t number;
  size_t n;
} last_set;
static char last_log[256];

static void *host_alloc(size_t n, size_t size, size_t align) {
  if (n == 0) return (void *)align;
  void *p = malloc(n * size);
  if (!p) abort();
  return p;
}

static transformer_string_t host_string(const char *s) {
  size_t len = strlen(s);
  transformer_string_t out = {host_alloc(len, 1, 1), len};
  if (len) memcpy(out.ptr, s, len);
  return out;
}

static void reset(uint32_t n) {
  memset(&calls, 0, sizeof calls);
  memset(&last_set, 0, sizeof last_set);
  n_flows = n;
}

// A plausible flow: two namespaces, ports by position.
static fake_flow sample(uint32_t i) {
  static const char *names[] = {"checkout-*", "payments-*", "kube-dns-*"};
  fake_flow f = {0};
  f.strings[0] = names[i % 3];
  f.strings[1] = i % 2 ? "payments" : "checkout";
  f.strings[2] = "postgres-*";
  f.strings[3] = "payments";
  f.strings[4] = "postgres";
  f.strings[5] = "payments";
  f.strings[6] = "";
  f.strings[7] = "tcp";
  for (int k = 0; k < 11; k++) f.ints[k] = 1000 * (k + 1) + i;
  f.ints[0] = i % 2 ? 443 : 5432;
  f.action = FG_ALLOW;
  f.reporter = FG_SRC;
  f.types[0] = FG_WORKLOAD_ENDPOINT;
  f.types[1] = FG_NETWORK;
  f.labels[0][0] = "app=checkout";
  f.labels[0][1] = "pod-template-hash=abc";
  f.n_labels[0] = 2;
  f.n_labels[1] = 0;
  f.n_policies[0] = 1;
  return f;
}

// A wrong handle, or any use of the batch after its borrow was dropped, is a bug (the host would trap).
static void check_handle(flowgate_transform_types_borrow_batch_t self) {
  if (self.__handle != HANDLE || calls.drop) abort();
}

static void check_flow(uint32_t flow) {
  if (flow >= n_flows) abort();  // the host traps
}

uint32_t flowgate_transform_types_method_batch_len(flowgate_transform_types_borrow_batch_t self) {
  check_handle(self);
  calls.len++;
  return n_flows;
}

void flowgate_transform_types_method_batch_strings(flowgate_transform_types_borrow_batch_t self,
                                                   flowgate_transform_types_string_field_t field,
                                                   flowgate_transform_types_string_column_t *ret) {
  check_handle(self);
  calls.strings[field]++;
  // Dictionary-encoded: each distinct value once.
  const char *distinct[MAX_FLOWS];
  size_t n = 0;
  ret->at = (transformer_list_u32_t){host_alloc(n_flows, 4, 4), n_flows};
  for (uint32_t i = 0; i < n_flows; i++) {
    size_t k = 0;
    while (k < n && strcmp(distinct[k], flows[i].strings[field])) k++;
    if (k == n) distinct[n++] = flows[i].strings[field];
    ret->at.ptr[i] = (uint32_t)k;
  }
  ret->values = (transformer_list_string_t){host_alloc(n, sizeof(transformer_string_t), 4), n};
  for (size_t k = 0; k < n; k++) ret->values.ptr[k] = host_string(distinct[k]);
}

void flowgate_transform_types_method_batch_ints(flowgate_transform_types_borrow_batch_t self,
                                                flowgate_transform_types_int_field_t field, transformer_list_s64_t *ret) {
  check_handle(self);
  calls.ints[field]++;
  *ret = (transformer_list_s64_t){host_alloc(n_flows, 8, 8), n_flows};
  for (uint32_t i = 0; i < n_flows; i++) ret->ptr[i] = flows[i].ints[field];
}

void flowgate_transform_types_method_batch_actions(flowgate_transform_types_borrow_batch_t self,
                                                   flowgate_transform_types_list_action_t *ret) {
  check_handle(self);
  calls.actions++;
  *ret = (flowgate_transform_types_list_action_t){host_alloc(n_flows, 1, 1), n_flows};
  for (uint32_t i = 0; i < n_flows; i++) ret->ptr[i] = flows[i].action;
}

void flowgate_transform_types_method_batch_reporters(flowgate_transform_types_borrow_batch_t self,
                                                     flowgate_transform_types_list_reporter_t *ret) {
  check_handle(self);
  calls.reporters++;
  *ret = (flowgate_transform_types_list_reporter_t){host_alloc(n_flows, 1, 1), n_flows};
  for (uint32_t i = 0; i < n_flows; i++) ret->ptr[i] = flows[i].reporter;
}

void flowgate_transform_types_method_batch_endpoint_types(flowgate_transform_types_borrow_batch_t self,
                                                          flowgate_transform_types_endpoint_field_t field,
                                                          flowgate_transform_types_list_endpoint_type_t *ret) {
  check_handle(self);
  calls.endpoints[field]++;
  *ret = (flowgate_transform_types_list_endpoint_type_t){host_alloc(n_flows, 1, 1), n_flows};
  for (uint32_t i = 0; i < n_flows; i++) ret->ptr[i] = flows[i].types[field];
}

static transformer_list_string_t host_labels(uint32_t flow, int field) {
  size_t n = flows[flow].n_labels[field];
  transformer_list_string_t l = {host_alloc(n, sizeof(transformer_string_t), 4), n};
  for (size_t k = 0; k < n; k++) l.ptr[k] = host_string(flows[flow].labels[field][k]);
  return l;
}

void flowgate_transform_types_method_batch_labels(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                  flowgate_transform_types_labels_field_t field,
                                                  transformer_list_string_t *ret) {
  check_handle(self);
  check_flow(flow);
  calls.labels++;
  *ret = host_labels(flow, field);
}

static flowgate_transform_types_list_policy_hit_t host_policies(uint32_t flow, int field) {
  size_t n = flows[flow].n_policies[field];
  flowgate_transform_types_list_policy_hit_t l = {host_alloc(n, sizeof(fg_policy_hit), 8), n};
  for (size_t k = 0; k < n; k++) {
    fg_policy_hit *h = &l.ptr[k];
    memset(h, 0, sizeof *h);
    h->kind = FLOWGATE_TRANSFORM_TYPES_POLICY_KIND_END_OF_TIER;
    h->namespace_ = host_string("");
    h->name = host_string("");
    h->tier = host_string("default");
    h->action = FG_DENY;
    h->policy_index = (int64_t)k;
    h->rule_index = -1;
    h->trigger.is_some = true;
    h->trigger.val.kind = FLOWGATE_TRANSFORM_TYPES_POLICY_KIND_CALICO_NETWORK_POLICY;
    h->trigger.val.namespace_ = host_string("payments");
    h->trigger.val.name = host_string("allow-checkout");
    h->trigger.val.tier = host_string("default");
  }
  return l;
}

void flowgate_transform_types_method_batch_policies(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                    flowgate_transform_types_policies_field_t field,
                                                    flowgate_transform_types_list_policy_hit_t *ret) {
  check_handle(self);
  check_flow(flow);
  calls.policies++;
  *ret = host_policies(flow, field);
}

void flowgate_transform_types_method_batch_record(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                  flowgate_transform_types_flow_t *ret) {
  check_handle(self);
  check_flow(flow);
  calls.record++;
  const fake_flow *f = &flows[flow];
  fg_flow r = {0};
  r.source_name = host_string(f->strings[0]);
  r.source_namespace = host_string(f->strings[1]);
  r.dest_name = host_string(f->strings[2]);
  r.dest_namespace = host_string(f->strings[3]);
  r.dest_service_name = host_string(f->strings[4]);
  r.dest_service_namespace = host_string(f->strings[5]);
  r.dest_service_port_name = host_string(f->strings[6]);
  r.proto = host_string(f->strings[7]);
  r.source_type = f->types[0];
  r.dest_type = f->types[1];
  r.dest_port = f->ints[0];
  r.dest_service_port = f->ints[1];
  r.start_time = f->ints[2];
  r.end_time = f->ints[3];
  r.packets_in = f->ints[4];
  r.packets_out = f->ints[5];
  r.bytes_in = f->ints[6];
  r.bytes_out = f->ints[7];
  r.num_connections_started = f->ints[8];
  r.num_connections_completed = f->ints[9];
  r.num_connections_live = f->ints[10];
  r.reporter = f->reporter;
  r.action = f->action;
  r.enforced_policies = host_policies(flow, 0);
  r.pending_policies = host_policies(flow, 1);
  r.source_labels = host_labels(flow, 0);
  r.dest_labels = host_labels(flow, 1);
  *ret = r;
}

void flowgate_transform_types_method_batch_set_string(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                      flowgate_transform_types_string_field_t field,
                                                      transformer_string_t *value) {
  check_handle(self);
  check_flow(flow);
  calls.set_string++;
  last_set.flow = flow, last_set.field = field;
  snprintf(last_set.value, sizeof last_set.value, "%.*s", (int)value->len, (const char *)value->ptr);
}

void flowgate_transform_types_method_batch_set_int(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                   flowgate_transform_types_int_field_t field, int64_t value) {
  check_handle(self);
  check_flow(flow);
  calls.set_int++;
  last_set.flow = flow, last_set.field = field, last_set.number = value;
}

void flowgate_transform_types_method_batch_set_action(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                      flowgate_transform_types_action_t value) {
  check_handle(self);
  check_flow(flow);
  calls.set_action++;
  last_set.flow = flow, last_set.number = value;
}

void flowgate_transform_types_method_batch_set_reporter(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                        flowgate_transform_types_reporter_t value) {
  check_handle(self);
  check_flow(flow);
  calls.set_reporter++;
  last_set.flow = flow, last_set.number = value;
}

void flowgate_transform_types_method_batch_set_endpoint_type(flowgate_transform_types_borrow_batch_t self,
                                                             uint32_t flow,
                                                             flowgate_transform_types_endpoint_field_t field,
                                                             flowgate_transform_types_endpoint_type_t value) {
  check_handle(self);
  check_flow(flow);
  calls.set_endpoint++;
  last_set.flow = flow, last_set.field = field, last_set.number = value;
}

void flowgate_transform_types_method_batch_set_labels(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                      flowgate_transform_types_labels_field_t field,
                                                      transformer_list_string_t *value) {
  check_handle(self);
  check_flow(flow);
  calls.set_labels++;
  last_set.flow = flow, last_set.field = field, last_set.n = value->len;
  if (value->len)
    snprintf(last_set.value, sizeof last_set.value, "%.*s", (int)value->ptr[0].len, (const char *)value->ptr[0].ptr);
}

void flowgate_transform_types_method_batch_set_policies(flowgate_transform_types_borrow_batch_t self, uint32_t flow,
                                                        flowgate_transform_types_policies_field_t field,
                                                        flowgate_transform_types_list_policy_hit_t *value) {
  check_handle(self);
  check_flow(flow);
  calls.set_policies++;
  last_set.flow = flow, last_set.field = field, last_set.n = value->len;
}

void flowgate_transform_types_batch_drop_borrow(flowgate_transform_types_borrow_batch_t self) {
  check_handle(self);
  calls.drop++;
}

void flowgate_transform_host_log(flowgate_transform_host_level_t level, transformer_string_t *message) {
  (void)level;
  snprintf(last_log, sizeof last_log, "%.*s", (int)message->len, (const char *)message->ptr);
}

void flowgate_transform_host_counter_add(transformer_string_t *name, uint64_t delta) { (void)name, (void)delta; }

// ---- Helpers ------------------------------------------------------------------------------------------------

static void free_str(transformer_string_t *s) {
  if (s->len) free(s->ptr);
}

// What the generated post-return does, for the outcomes these tests make.
static void free_outcomes(fg_outcome_t *o, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (o[i].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_ERROR) free_str(&o[i].val.error);
    if (o[i].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_ANNOTATE) {
      flowgate_transform_types_annotations_t *a = &o[i].val.annotate;
      for (size_t k = 0; k < a->attributes.len; k++) {
        free_str(&a->attributes.ptr[k].key);
        if (a->attributes.ptr[k].value.tag == FLOWGATE_TRANSFORM_TYPES_VALUE_STR)
          free_str(&a->attributes.ptr[k].value.val.str);
      }
      if (a->attributes.len) free(a->attributes.ptr);
      if (a->body.is_some && a->body.val.tag == FLOWGATE_TRANSFORM_TYPES_BODY_TEXT) free_str(&a->body.val.val.text);
    }
  }
  free(o);
}

// Calls the init export with `pairs` (key, value, key, value, ..., NULL); returns the error or NULL (caller frees).
static char *init(const char *const *pairs) {
  size_t n = 0;
  while (pairs[2 * n]) n++;
  transformer_list_tuple2_string_string_t config = {host_alloc(n, sizeof(transformer_tuple2_string_string_t), 4), n};
  for (size_t k = 0; k < n; k++) {
    config.ptr[k].f0 = host_string(pairs[2 * k]);
    config.ptr[k].f1 = host_string(pairs[2 * k + 1]);
  }
  transformer_string_t err = {0};
  if (exports_flowgate_transform_transform_init(&config, &err)) return NULL;
  char *out = malloc(err.len + 1);
  memcpy(out, err.ptr, err.len);
  out[err.len] = 0;
  free_str(&err);
  return out;
}

static void check_init_error(const char *const *pairs, const char *want) {
  char *err = init(pairs);
  CHECK_STR(err, want);
  free(err);
}

static fg_outcome_t *process(size_t *n) {
  exports_flowgate_transform_transform_list_outcome_t ret;
  exports_flowgate_transform_transform_process((exports_flowgate_transform_transform_borrow_batch_t){HANDLE}, &ret);
  *n = ret.len;
  return ret.ptr;
}

// ---- Tests --------------------------------------------------------------------------------------------------

static void columns_are_fetched_once_and_only_when_read(void) {
  reset(6);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i);
  fg_batch *b = fg_batch_open(HANDLE);
  CHECK(calls.len == 1 && fg_len(b) == 6);
  for (int pass = 0; pass < 3; pass++)
    for (uint32_t i = 0; i < 6; i++) {
      CHECK_STR(fg_source_namespace(b, i).ptr, i % 2 ? "payments" : "checkout");
      CHECK(fg_dest_port(b, i) == (i % 2 ? 443 : 5432));
      CHECK(fg_action(b, i) == FG_ALLOW);
    }
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAMESPACE] == 1);
  CHECK(calls.ints[FLOWGATE_TRANSFORM_TYPES_INT_FIELD_DEST_PORT] == 1);
  CHECK(calls.actions == 1);
  // Nothing else crossed.
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_DEST_NAMESPACE] == 0);
  CHECK(calls.ints[FLOWGATE_TRANSFORM_TYPES_INT_FIELD_BYTES_IN] == 0);
  CHECK(calls.reporters == 0 && calls.labels == 0 && calls.policies == 0 && calls.record == 0 && calls.len == 1);
  // The column: distinct values once, one pointer per value, NUL-terminated with the right length.
  const fg_column *col = fg_strings(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAMESPACE);
  CHECK(col->n_values == 2 && col->len == 6);
  CHECK(fg_source_namespace(b, 0).ptr == fg_source_namespace(b, 2).ptr);
  CHECK(fg_source_namespace(b, 1).len == strlen("payments"));
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAMESPACE] == 1);
  size_t n;
  fg_outcome_t *o = fg_batch_close(b, &n);
  CHECK(n == 6);
  for (size_t i = 0; i < n; i++) CHECK(o[i].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_KEEP);
  free_outcomes(o, n);
}

static void every_field_reads_what_the_host_holds(void) {
  reset(3);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i);
  flows[2].strings[6] = "postgres";
  flows[2].action = FG_PASS;
  flows[1].reporter = FG_DST;
  fg_batch *b = fg_batch_open(HANDLE);
  for (uint32_t i = 0; i < 3; i++) {
    CHECK_STR(fg_source_name(b, i).ptr, flows[i].strings[0]);
    CHECK_STR(fg_source_namespace(b, i).ptr, flows[i].strings[1]);
    CHECK_STR(fg_dest_name(b, i).ptr, flows[i].strings[2]);
    CHECK_STR(fg_dest_namespace(b, i).ptr, flows[i].strings[3]);
    CHECK_STR(fg_dest_service_name(b, i).ptr, flows[i].strings[4]);
    CHECK_STR(fg_dest_service_namespace(b, i).ptr, flows[i].strings[5]);
    CHECK_STR(fg_dest_service_port_name(b, i).ptr, flows[i].strings[6]);
    CHECK_STR(fg_proto(b, i).ptr, flows[i].strings[7]);
    CHECK(fg_dest_port(b, i) == flows[i].ints[0]);
    CHECK(fg_dest_service_port(b, i) == flows[i].ints[1]);
    CHECK(fg_start_time(b, i) == flows[i].ints[2]);
    CHECK(fg_end_time(b, i) == flows[i].ints[3]);
    CHECK(fg_packets_in(b, i) == flows[i].ints[4]);
    CHECK(fg_packets_out(b, i) == flows[i].ints[5]);
    CHECK(fg_bytes_in(b, i) == flows[i].ints[6]);
    CHECK(fg_bytes_out(b, i) == flows[i].ints[7]);
    CHECK(fg_num_connections_started(b, i) == flows[i].ints[8]);
    CHECK(fg_num_connections_completed(b, i) == flows[i].ints[9]);
    CHECK(fg_num_connections_live(b, i) == flows[i].ints[10]);
    CHECK(fg_action(b, i) == flows[i].action);
    CHECK(fg_reporter(b, i) == flows[i].reporter);
    CHECK(fg_source_type(b, i) == FG_WORKLOAD_ENDPOINT);
    CHECK(fg_dest_type(b, i) == FG_NETWORK);
    fg_strs l = fg_source_labels(b, i);
    CHECK(l.len == 2);
    if (l.len == 2) CHECK_STR(l.ptr[1].ptr, "pod-template-hash=abc");
    CHECK(fg_dest_labels(b, i).len == 0);
    fg_policies p = fg_enforced_policies(b, i);
    CHECK(p.len == 1);
    if (p.len == 1) {
      CHECK(p.ptr[0].kind == FLOWGATE_TRANSFORM_TYPES_POLICY_KIND_END_OF_TIER && p.ptr[0].trigger.is_some);
      CHECK(p.ptr[0].trigger.val.name.len == strlen("allow-checkout"));
    }
    CHECK(fg_pending_policies(b, i).len == 0);
    const fg_flow *r = fg_record(b, i);
    CHECK(r->dest_port == flows[i].ints[0] && r->action == flows[i].action && r->source_labels.len == 2);
    CHECK(r->proto.len == 3 && !memcmp(r->proto.ptr, "tcp", 3));
    CHECK(fg_record(b, i) == r);
  }
  for (int f = 0; f < 8; f++) CHECK(calls.strings[f] == 1);
  for (int f = 0; f < 11; f++) CHECK(calls.ints[f] == 1);
  CHECK(calls.actions == 1 && calls.reporters == 1 && calls.endpoints[0] == 1 && calls.endpoints[1] == 1);
  // Lists and records: once per flow and field.
  CHECK(calls.labels == 6 && calls.policies == 6 && calls.record == 3);
  fg_source_labels(b, 1);
  fg_enforced_policies(b, 1);
  CHECK(calls.labels == 6 && calls.policies == 6);
  size_t n;
  free_outcomes(fg_batch_close(b, &n), n);
}

static void setters_call_the_host_and_show_your_changes(void) {
  reset(4);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i);
  fg_batch *b = fg_batch_open(HANDLE);

  // A string set before the column is read: no fetch for that flow; the column then shows it.
  fg_set_source_name(b, 1, "redacted");
  CHECK(calls.set_string == 1 && last_set.flow == 1 && !strcmp(last_set.value, "redacted"));
  CHECK(last_set.field == FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAME);
  CHECK_STR(fg_source_name(b, 1).ptr, "redacted");
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAME] == 0);
  CHECK_STR(fg_source_name(b, 0).ptr, "checkout-*");
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAME] == 1);
  CHECK_STR(fg_source_name(b, 1).ptr, "redacted");
  const fg_column *col = fg_strings(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAME);
  CHECK_STR(col->values[col->at[1]].ptr, "redacted");
  CHECK_STR(col->values[col->at[2]].ptr, "kube-dns-*");
  for (int k = 0; k < 20; k++) fg_set_source_name(b, 3, "moves values");  // grows (reallocates) `values`
  CHECK_STR(col->values[col->at[3]].ptr, "moves values");
  CHECK(col->n_values == 3 + 1 + 20);
  // ... and after: the same.
  fg_set_source_name(b, 2, "x");
  CHECK_STR(fg_source_name(b, 2).ptr, "x");
  CHECK_STR(fg_source_name(b, 3).ptr, "moves values");
  fg_set_string_n(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_PROTO, 0, "udpXX", 3);
  CHECK_STR(fg_proto(b, 0).ptr, "udp");
  CHECK_STR(last_set.value, "udp");
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAME] == 1);

  // Numbers and enums.
  fg_set_dest_port(b, 3, 8443);
  CHECK(calls.set_int == 1 && last_set.flow == 3 && last_set.number == 8443);
  CHECK(fg_dest_port(b, 3) == 8443 && calls.ints[FLOWGATE_TRANSFORM_TYPES_INT_FIELD_DEST_PORT] == 0);
  CHECK(fg_dest_port(b, 0) == 5432 && fg_dest_port(b, 3) == 8443);
  CHECK(calls.ints[FLOWGATE_TRANSFORM_TYPES_INT_FIELD_DEST_PORT] == 1);
  CHECK(fg_action(b, 0) == FG_ALLOW);
  fg_set_action(b, 0, FG_DENY);
  CHECK(calls.set_action == 1 && fg_action(b, 0) == FG_DENY && fg_action(b, 1) == FG_ALLOW && calls.actions == 1);
  fg_set_reporter(b, 2, FG_DST);
  CHECK(calls.set_reporter == 1 && fg_reporter(b, 2) == FG_DST && fg_reporter(b, 1) == FG_SRC);
  fg_set_dest_type(b, 1, FG_HOST_ENDPOINT);
  CHECK(calls.set_endpoint == 1 && last_set.field == FLOWGATE_TRANSFORM_TYPES_ENDPOINT_FIELD_DEST_TYPE);
  CHECK(fg_dest_type(b, 1) == FG_HOST_ENDPOINT && fg_source_type(b, 1) == FG_WORKLOAD_ENDPOINT);

  // Lists.
  const char *labels[] = {"app=payments"};
  fg_set_source_labels(b, 0, labels, 1);
  CHECK(calls.set_labels == 1 && last_set.n == 1 && !strcmp(last_set.value, "app=payments"));
  fg_strs l = fg_source_labels(b, 0);
  CHECK(l.len == 1 && calls.labels == 0);
  if (l.len == 1) CHECK_STR(l.ptr[0].ptr, "app=payments");
  CHECK(fg_source_labels(b, 1).len == 2);  // read, then replaced
  fg_set_source_labels(b, 1, NULL, 0);
  CHECK(fg_source_labels(b, 1).len == 0 && calls.labels == 1);
  fg_policies p = fg_enforced_policies(b, 2);
  fg_set_pending_policies(b, 2, p.ptr, p.len);  // copied: the source stays valid
  CHECK(calls.set_policies == 1 && last_set.n == 1);
  fg_policies q = fg_pending_policies(b, 2);
  CHECK(q.len == 1 && q.ptr != p.ptr && q.ptr[0].trigger.is_some && q.ptr[0].tier.len == 7);
  fg_set_enforced_policies(b, 2, NULL, 0);
  CHECK(fg_enforced_policies(b, 2).len == 0 && calls.policies == 1);

  // The record is the flow as it entered.
  CHECK(fg_record(b, 3)->dest_port == 443);
  size_t n;
  free_outcomes(fg_batch_close(b, &n), n);
}

static void outcomes_are_built_for_the_generated_code(void) {
  reset(5);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i);
  fg_batch *b = fg_batch_open(HANDLE);
  fg_drop(b, 1);
  fg_error(b, 2, "bad port %d", 70000);
  fg_attr_str(b, 3, "team", "payments");
  fg_attr_int(b, 3, "bytes", 12);
  fg_severity(b, 3, FG_WARN);
  fg_body_text(b, 3, "first");
  fg_body_text(b, 3, "second");
  fg_attr_bool(b, 4, "x", true);
  fg_drop(b, 4);  // annotations freed
  size_t n;
  fg_outcome_t *o = fg_batch_close(b, &n);
  CHECK(n == 5);
  CHECK(o[0].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_KEEP);
  CHECK(o[1].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_DROP);
  CHECK(o[2].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_ERROR && o[2].val.error.len == 14 &&
        !memcmp(o[2].val.error.ptr, "bad port 70000", 14));
  CHECK(o[3].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_ANNOTATE);
  flowgate_transform_types_annotations_t *a = &o[3].val.annotate;
  CHECK(a->attributes.len == 2 && a->attributes.ptr[1].value.tag == FLOWGATE_TRANSFORM_TYPES_VALUE_INT &&
        a->attributes.ptr[1].value.val.int_ == 12);
  CHECK(a->severity.is_some && a->severity.val == FG_WARN);
  CHECK(a->body.is_some && a->body.val.tag == FLOWGATE_TRANSFORM_TYPES_BODY_TEXT && a->body.val.val.text.len == 6);
  CHECK(o[4].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_DROP);
  free_outcomes(o, n);

  // An empty batch: nothing fetched, nothing returned.
  reset(0);
  o = process(&n);
  CHECK(n == 0 && o == NULL && calls.len == 1 && calls.drop == 1);
}

static void config_refuses_keys_it_never_read(void) {
  check_init_error((const char *[]){"actions", "Deny", "drop_namespace", "kube-*", NULL},
                   "unknown config key \"drop_namespace\"; this transform reads: actions, drop_namespaces, ports");
  check_init_error((const char *[]){"port", "1", "allow_sample_rate", "0.5", "actions", "Deny", "port", "2", NULL},
                   "unknown config keys \"allow_sample_rate\", \"port\"; this transform reads: actions, "
                   "drop_namespaces, ports");
  // The transform's own errors come first, unchanged from 0.1.0.
  check_init_error((const char *[]){"actions", "Deny,Block", "typo", "x", NULL},
                   "actions: \"Block\" is not Allow, Deny or Pass");
  check_init_error((const char *[]){"ports", "443,https", NULL}, "ports: not a list of port numbers");
  char *err = init((const char *[]){"actions", " Deny , Pass,,", "ports", "443", "drop_namespaces", "kube-*", NULL});
  CHECK(err == NULL);
  free(err);
  CHECK_STR(last_log, "c filter ready");
  err = init((const char *[]){NULL});
  CHECK(err == NULL);
  free(err);
}

static void the_filter_decides_as_the_rust_one(void) {
  char *err = init((const char *[]){"actions", "Deny", "drop_namespaces", "kube-*,monitoring", NULL});
  CHECK(err == NULL);
  free(err);
  reset(7);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i), flows[i].action = FG_DENY;
  flows[0].action = FG_ALLOW;                // not Deny: dropped
  flows[2].strings[1] = "kube-system";       // source namespace matches
  flows[3].strings[3] = "monitoring";        // dest namespace matches
  flows[4].strings[3] = "monitoring-2";      // a glob matches whole names: kept
  flows[5].action = FG_PASS;                 // dropped
  flows[6].strings[1] = "kube-system";       // same distinct value as flow 2
  size_t n;
  fg_outcome_t *o = process(&n);
  const bool dropped[] = {true, false, true, true, false, true, true};
  CHECK(n == 7);
  for (size_t i = 0; i < n && i < 7; i++) {
    if (o[i].tag != (dropped[i] ? FLOWGATE_TRANSFORM_TYPES_OUTCOME_DROP : FLOWGATE_TRANSFORM_TYPES_OUTCOME_KEEP)) {
      fprintf(stderr, "flow %zu: tag %d\n", i, o[i].tag);
      failures++;
    }
  }
  free_outcomes(o, n);
  // Only what the decision needs, once each; the borrowed batch dropped once, at the end.
  CHECK(calls.len == 1 && calls.actions == 1 && calls.drop == 1);
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAMESPACE] == 1);
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_DEST_NAMESPACE] == 1);
  CHECK(calls.strings[FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAME] == 0);
  for (int f = 0; f < 11; f++) CHECK(calls.ints[f] == 0);
  CHECK(calls.record == 0 && calls.labels == 0 && calls.policies == 0);

  // Ports: only the listed destination ports; no option: everything kept, nothing fetched.
  err = init((const char *[]){"ports", "443", NULL});
  free(err);
  reset(4);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i);
  o = process(&n);
  for (size_t i = 0; i < n; i++)
    CHECK(o[i].tag == (i % 2 ? FLOWGATE_TRANSFORM_TYPES_OUTCOME_KEEP : FLOWGATE_TRANSFORM_TYPES_OUTCOME_DROP));
  CHECK(calls.ints[FLOWGATE_TRANSFORM_TYPES_INT_FIELD_DEST_PORT] == 1 && calls.actions == 0);
  free_outcomes(o, n);
  err = init((const char *[]){NULL});
  free(err);
  reset(4);
  for (uint32_t i = 0; i < n_flows; i++) flows[i] = sample(i);
  o = process(&n);
  for (size_t i = 0; i < n; i++) CHECK(o[i].tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_KEEP);
  CHECK(calls.actions == 0 && calls.strings[1] == 0 && calls.ints[0] == 0);
  free_outcomes(o, n);
}

int main(void) {
  columns_are_fetched_once_and_only_when_read();
  every_field_reads_what_the_host_holds();
  setters_call_the_host_and_show_your_changes();
  outcomes_are_built_for_the_generated_code();
  config_refuses_keys_it_never_read();
  the_filter_decides_as_the_rust_one();
  init((const char *[]){NULL});  // frees the filter's globs
  if (failures) {
    fprintf(stderr, "c-filter tests: %d failed\n", failures);
    return 1;
  }
  printf("c-filter tests: all passed\n");
  return 0;
}
