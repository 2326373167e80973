// flowgate.c: the column cache, setters, outcomes and config of flowgate.h, and the two generated exports
// (`exports_flowgate_transform_transform_init` / `_process`) that call the transform's fg_init / fg_process.
//
// Ownership (canonical ABI, as wit-bindgen c arranges it): everything the host hands us (config, columns, lists,
// records) was allocated with cabi_realloc (= realloc) and is ours to free; an empty list's pointer is not a
// heap pointer (cabi_realloc returns `align` for size 0), so only non-empty lists are freed. What we return
// (the outcome list, error string) is malloc'd and freed by the generated post-return code.
#include "flowgate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_STRING 8
#define N_INT 11
// Enum columns: action, reporter, source-type, dest-type.
#define N_ENUM 4
#define E_ACTION 0
#define E_REPORTER 1
#define E_ENDPOINT 2

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) abort();
  return p;
}

static char *dup_n(const char *s, size_t len) {
  char *out = xmalloc(len + 1);
  memcpy(out, s, len);
  out[len] = 0;
  return out;
}

// ---- Freeing what the host gave (lists are freed only when non-empty) ----------------------------------------

static void free_string(transformer_string_t *s) {
  if (s->len) free(s->ptr);
}

static void free_strings(transformer_list_string_t *l) {
  for (size_t i = 0; i < l->len; i++) free_string(&l->ptr[i]);
  if (l->len) free(l->ptr);
}

static void free_hits(flowgate_transform_types_list_policy_hit_t *l) {
  for (size_t i = 0; i < l->len; i++) {
    fg_policy_hit *h = &l->ptr[i];
    free_string(&h->namespace_);
    free_string(&h->name);
    free_string(&h->tier);
    if (h->trigger.is_some) {
      free_string(&h->trigger.val.namespace_);
      free_string(&h->trigger.val.name);
      free_string(&h->trigger.val.tier);
    }
  }
  if (l->len) free(l->ptr);
}

static void free_flow(fg_flow *f) {
  transformer_string_t *strings[] = {&f->source_name,       &f->source_namespace,       &f->dest_name,
                                     &f->dest_namespace,    &f->dest_service_name,      &f->dest_service_namespace,
                                     &f->dest_service_port_name, &f->proto};
  for (size_t k = 0; k < sizeof strings / sizeof *strings; k++) free_string(strings[k]);
  free_hits(&f->enforced_policies);
  free_hits(&f->pending_policies);
  free_strings(&f->source_labels);
  free_strings(&f->dest_labels);
}

static void free_value(flowgate_transform_types_value_t *v) {
  if (v->tag == FLOWGATE_TRANSFORM_TYPES_VALUE_STR) free_string(&v->val.str);
  if (v->tag == FLOWGATE_TRANSFORM_TYPES_VALUE_STR_LIST) free_strings(&v->val.str_list);
}

static void free_attributes(flowgate_transform_types_list_attribute_t *l) {
  for (size_t i = 0; i < l->len; i++) {
    free_string(&l->ptr[i].key);
    free_value(&l->ptr[i].value);
  }
  if (l->len) free(l->ptr);
}

static void free_annotations(flowgate_transform_types_annotations_t *a) {
  free_attributes(&a->attributes);
  if (a->body.is_some) {
    if (a->body.val.tag == FLOWGATE_TRANSFORM_TYPES_BODY_STRUCTURED) free_attributes(&a->body.val.val.structured);
    if (a->body.val.tag == FLOWGATE_TRANSFORM_TYPES_BODY_TEXT) free_string(&a->body.val.val.text);
  }
}

static void free_outcome(fg_outcome_t *o) {
  if (o->tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_ANNOTATE) free_annotations(&o->val.annotate);
  if (o->tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_ERROR) free_string(&o->val.error);
  if (o->tag == FLOWGATE_TRANSFORM_TYPES_OUTCOME_EXPAND) {
    flowgate_transform_types_list_output_t *l = &o->val.expand;
    for (size_t k = 0; k < l->len; k++) {
      free_flow(&l->ptr[k].flow);
      free_annotations(&l->ptr[k].annotations);
    }
    if (l->len) free(l->ptr);
  }
  memset(o, 0, sizeof *o);
}

// ---- The batch -------------------------------------------------------------------------------------------------

// A string column with your changes: values[0..n_host) point into `buf` (the host's distinct values, copied
// once, NUL-terminated), values[n_host..) are your own, each malloc'd. Before the column is fetched, only set
// flows have an `at` entry (indexing your own values); fetching shifts them past the host's.
typedef struct {
  fg_column view;
  bool fetched;
  fg_str *values;
  size_t n_values, cap, n_host;
  uint32_t *at;
  uint8_t *set;
  char *buf;
} str_col;

// A number or enum column with your changes: `values` holds every flow once fetched, only set flows before.
typedef struct {
  bool fetched;
  int64_t *values;
  uint8_t *set;
} num_col;

typedef struct {
  bool fetched;
  fg_str *items;
  size_t len;
  char *buf;
} labels_entry;

typedef struct {
  bool fetched;
  flowgate_transform_types_list_policy_hit_t list;
} policies_entry;

typedef struct {
  bool fetched;
  fg_flow flow;
} record_entry;

struct fg_batch {
  flowgate_transform_types_borrow_batch_t handle;
  uint32_t len;
  str_col strings[N_STRING];
  num_col ints[N_INT];
  num_col enums[N_ENUM];
  labels_entry *labels[2];
  policies_entry *policies[2];
  record_entry *records;
  fg_outcome_t *outcomes;
};

static void check(const fg_batch *b, uint32_t i) {
  if (i >= b->len) abort();
}

fg_batch *fg_batch_open(int32_t handle) {
  fg_batch *b = xcalloc(1, sizeof *b);
  b->handle.__handle = handle;
  b->len = flowgate_transform_types_method_batch_len(b->handle);
  b->outcomes = b->len ? xcalloc(b->len, sizeof *b->outcomes) : NULL;  // zeroed: every flow `keep`
  return b;
}

fg_outcome_t *fg_batch_close(fg_batch *b, size_t *len) {
  for (int f = 0; f < N_STRING; f++) {
    str_col *c = &b->strings[f];
    for (size_t k = c->n_host; k < c->n_values; k++) free((char *)c->values[k].ptr);
    free(c->values);
    free(c->at);
    free(c->set);
    free(c->buf);
  }
  for (int f = 0; f < N_INT; f++) free(b->ints[f].values), free(b->ints[f].set);
  for (int f = 0; f < N_ENUM; f++) free(b->enums[f].values), free(b->enums[f].set);
  for (int f = 0; f < 2; f++) {
    if (b->labels[f])
      for (uint32_t i = 0; i < b->len; i++) free(b->labels[f][i].items), free(b->labels[f][i].buf);
    if (b->policies[f])
      for (uint32_t i = 0; i < b->len; i++) free_hits(&b->policies[f][i].list);
    free(b->labels[f]);
    free(b->policies[f]);
  }
  if (b->records)
    for (uint32_t i = 0; i < b->len; i++)
      if (b->records[i].fetched) free_flow(&b->records[i].flow);
  free(b->records);
  fg_outcome_t *outcomes = b->outcomes;
  *len = b->len;
  free(b);
  return outcomes;
}

uint32_t fg_len(const fg_batch *b) { return b->len; }

// Strings.

static void str_push(str_col *c, fg_str v) {
  if (c->n_values == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 8;
    c->values = realloc(c->values, c->cap * sizeof *c->values);
    if (!c->values) abort();
  }
  c->values[c->n_values++] = v;
}

static str_col *str_fetch(fg_batch *b, fg_string_field field) {
  if (field >= N_STRING) abort();
  str_col *c = &b->strings[field];
  if (c->fetched) return c;
  flowgate_transform_types_string_column_t col;
  flowgate_transform_types_method_batch_strings(b->handle, field, &col);
  if (col.at.len != b->len) abort();
  // The host's distinct values, NUL-terminated, in one buffer; then your own values after them.
  size_t total = 0;
  for (size_t k = 0; k < col.values.len; k++) total += col.values.ptr[k].len + 1;
  c->buf = xmalloc(total);
  size_t own = c->n_values, n = col.values.len;
  fg_str *values = xmalloc((n + own) * sizeof *values);
  char *p = c->buf;
  for (size_t k = 0; k < n; k++) {
    memcpy(p, col.values.ptr[k].ptr, col.values.ptr[k].len);
    p[col.values.ptr[k].len] = 0;
    values[k] = (fg_str){p, col.values.ptr[k].len};
    p += col.values.ptr[k].len + 1;
  }
  if (own) memcpy(values + n, c->values, own * sizeof *values);
  free(c->values);
  c->values = values;
  c->n_values = c->cap = n + own;
  c->n_host = n;
  if (!c->at) c->at = xmalloc(b->len * sizeof *c->at);
  for (uint32_t i = 0; i < b->len; i++) {
    if (c->set && c->set[i]) c->at[i] += (uint32_t)n;
    else if (col.at.ptr[i] < n) c->at[i] = col.at.ptr[i];
    else abort();
  }
  free_strings(&col.values);
  if (col.at.len) free(col.at.ptr);
  c->fetched = true;
  return c;
}

const fg_column *fg_strings(fg_batch *b, fg_string_field field) {
  str_col *c = str_fetch(b, field);
  c->view = (fg_column){c->values, c->n_values, c->at, b->len};
  return &c->view;
}

fg_str fg_string(fg_batch *b, fg_string_field field, uint32_t i) {
  check(b, i);
  if (field >= N_STRING) abort();
  str_col *c = &b->strings[field];
  if (!(c->set && c->set[i])) c = str_fetch(b, field);
  return c->values[c->at[i]];
}

void fg_set_string_n(fg_batch *b, fg_string_field field, uint32_t i, const char *value, size_t len) {
  check(b, i);
  if (field >= N_STRING) abort();
  transformer_string_t s = {(uint8_t *)value, len};
  flowgate_transform_types_method_batch_set_string(b->handle, i, field, &s);
  str_col *c = &b->strings[field];
  if (!c->at) c->at = xcalloc(b->len, sizeof *c->at);
  if (!c->set) c->set = xcalloc(b->len, 1);
  c->at[i] = (uint32_t)(c->n_values - c->n_host);  // before the fetch, relative to your own values
  if (c->fetched) c->at[i] = (uint32_t)c->n_values;
  str_push(c, (fg_str){dup_n(value, len), len});
  c->set[i] = 1;
  if (c->fetched) c->view = (fg_column){c->values, c->n_values, c->at, b->len};  // `values` may have moved
}

void fg_set_string(fg_batch *b, fg_string_field field, uint32_t i, const char *value) {
  fg_set_string_n(b, field, i, value, strlen(value));
}

// Numbers and enums.

static num_col *num_fetch(fg_batch *b, num_col *c, int kind, int field) {
  if (c->fetched) return c;
  int64_t *ints = NULL;
  uint8_t *small = NULL;
  size_t n = 0;
  if (kind < 0) {
    transformer_list_s64_t l;
    flowgate_transform_types_method_batch_ints(b->handle, (fg_int_field)field, &l);
    ints = l.ptr, n = l.len;
  } else if (kind == E_ACTION) {
    flowgate_transform_types_list_action_t l;
    flowgate_transform_types_method_batch_actions(b->handle, &l);
    small = l.ptr, n = l.len;
  } else if (kind == E_REPORTER) {
    flowgate_transform_types_list_reporter_t l;
    flowgate_transform_types_method_batch_reporters(b->handle, &l);
    small = l.ptr, n = l.len;
  } else {
    flowgate_transform_types_list_endpoint_type_t l;
    flowgate_transform_types_method_batch_endpoint_types(b->handle, (fg_endpoint_field)field, &l);
    small = l.ptr, n = l.len;
  }
  if (n != b->len) abort();
  if (!c->values) c->values = xmalloc(b->len * sizeof *c->values);
  for (uint32_t i = 0; i < b->len; i++)
    if (!(c->set && c->set[i])) c->values[i] = ints ? ints[i] : small[i];
  if (n) free(ints ? (void *)ints : (void *)small);
  c->fetched = true;
  return c;
}

static int64_t num_get(fg_batch *b, num_col *c, int kind, int field, uint32_t i) {
  check(b, i);
  if (c->set && c->set[i]) return c->values[i];
  return num_fetch(b, c, kind, field)->values[i];
}

static void num_set(fg_batch *b, num_col *c, uint32_t i, int64_t v) {
  if (!c->values) c->values = xcalloc(b->len, sizeof *c->values);
  if (!c->set) c->set = xcalloc(b->len, 1);
  c->values[i] = v;
  c->set[i] = 1;
}

int64_t fg_int(fg_batch *b, fg_int_field field, uint32_t i) {
  if (field >= N_INT) abort();
  return num_get(b, &b->ints[field], -1, field, i);
}

fg_action_t fg_action(fg_batch *b, uint32_t i) {
  return (fg_action_t)num_get(b, &b->enums[0], E_ACTION, 0, i);
}

fg_reporter_t fg_reporter(fg_batch *b, uint32_t i) {
  return (fg_reporter_t)num_get(b, &b->enums[1], E_REPORTER, 0, i);
}

fg_endpoint_type_t fg_endpoint_type(fg_batch *b, fg_endpoint_field field, uint32_t i) {
  if (field > 1) abort();
  return (fg_endpoint_type_t)num_get(b, &b->enums[2 + field], E_ENDPOINT, field, i);
}

void fg_set_int(fg_batch *b, fg_int_field field, uint32_t i, int64_t value) {
  check(b, i);
  if (field >= N_INT) abort();
  flowgate_transform_types_method_batch_set_int(b->handle, i, field, value);
  num_set(b, &b->ints[field], i, value);
}

void fg_set_action(fg_batch *b, uint32_t i, fg_action_t value) {
  check(b, i);
  flowgate_transform_types_method_batch_set_action(b->handle, i, value);
  num_set(b, &b->enums[0], i, value);
}

void fg_set_reporter(fg_batch *b, uint32_t i, fg_reporter_t value) {
  check(b, i);
  flowgate_transform_types_method_batch_set_reporter(b->handle, i, value);
  num_set(b, &b->enums[1], i, value);
}

void fg_set_endpoint_type(fg_batch *b, fg_endpoint_field field, uint32_t i, fg_endpoint_type_t value) {
  check(b, i);
  if (field > 1) abort();
  flowgate_transform_types_method_batch_set_endpoint_type(b->handle, i, field, value);
  num_set(b, &b->enums[2 + field], i, value);
}

// Per-flow lists.

static labels_entry *labels_slot(fg_batch *b, fg_labels_field field, uint32_t i) {
  check(b, i);
  if (field > 1) abort();
  if (!b->labels[field]) b->labels[field] = xcalloc(b->len, sizeof *b->labels[field]);
  labels_entry *e = &b->labels[field][i];
  free(e->items);
  free(e->buf);
  return e;
}

// Copies `n` strings into one NUL-terminated buffer and a view array.
static void labels_fill(labels_entry *e, size_t n, const char *(*at)(const void *, size_t, size_t *),
                        const void *src) {
  size_t total = 0, len;
  for (size_t k = 0; k < n; k++) at(src, k, &len), total += len + 1;
  e->buf = xmalloc(total);
  e->items = xmalloc(n * sizeof *e->items);
  e->len = n;
  char *p = e->buf;
  for (size_t k = 0; k < n; k++) {
    const char *s = at(src, k, &len);
    memcpy(p, s, len);
    p[len] = 0;
    e->items[k] = (fg_str){p, len};
    p += len + 1;
  }
  e->fetched = true;
}

static const char *wit_string_at(const void *src, size_t k, size_t *len) {
  const transformer_string_t *s = &((const transformer_list_string_t *)src)->ptr[k];
  *len = s->len;
  return (const char *)s->ptr;
}

static const char *c_string_at(const void *src, size_t k, size_t *len) {
  const char *s = ((const char *const *)src)[k];
  *len = strlen(s);
  return s;
}

fg_strs fg_labels(fg_batch *b, fg_labels_field field, uint32_t i) {
  check(b, i);
  if (field > 1) abort();
  if (!(b->labels[field] && b->labels[field][i].fetched)) {
    transformer_list_string_t l;
    flowgate_transform_types_method_batch_labels(b->handle, i, field, &l);
    labels_fill(labels_slot(b, field, i), l.len, wit_string_at, &l);
    free_strings(&l);
  }
  labels_entry *e = &b->labels[field][i];
  return (fg_strs){e->items, e->len};
}

void fg_set_labels(fg_batch *b, fg_labels_field field, uint32_t i, const char *const *labels, size_t n) {
  check(b, i);
  if (field > 1) abort();
  transformer_string_t *items = xmalloc(n * sizeof *items);
  for (size_t k = 0; k < n; k++) items[k] = (transformer_string_t){(uint8_t *)labels[k], strlen(labels[k])};
  transformer_list_string_t l = {items, n};
  flowgate_transform_types_method_batch_set_labels(b->handle, i, field, &l);
  free(items);
  labels_fill(labels_slot(b, field, i), n, c_string_at, labels);
}

static policies_entry *policies_slot(fg_batch *b, fg_policies_field field, uint32_t i) {
  check(b, i);
  if (field > 1) abort();
  if (!b->policies[field]) b->policies[field] = xcalloc(b->len, sizeof *b->policies[field]);
  policies_entry *e = &b->policies[field][i];
  free_hits(&e->list);
  memset(&e->list, 0, sizeof e->list);
  return e;
}

fg_policies fg_policies_of(fg_batch *b, fg_policies_field field, uint32_t i) {
  check(b, i);
  if (field > 1) abort();
  if (!(b->policies[field] && b->policies[field][i].fetched)) {
    policies_entry *e = policies_slot(b, field, i);
    flowgate_transform_types_method_batch_policies(b->handle, i, field, &e->list);
    e->fetched = true;
  }
  policies_entry *e = &b->policies[field][i];
  return (fg_policies){e->list.ptr, e->list.len};
}

static void copy_string(transformer_string_t *to, const transformer_string_t *from) {
  to->len = from->len;
  to->ptr = from->len ? (uint8_t *)dup_n((const char *)from->ptr, from->len) : NULL;
}

void fg_set_policies(fg_batch *b, fg_policies_field field, uint32_t i, const fg_policy_hit *hits, size_t n) {
  check(b, i);
  if (field > 1) abort();
  flowgate_transform_types_list_policy_hit_t l = {(fg_policy_hit *)hits, n};
  flowgate_transform_types_method_batch_set_policies(b->handle, i, field, &l);
  // Deep copy: the caller keeps its hits.
  policies_entry *e = policies_slot(b, field, i);
  e->list.ptr = n ? xmalloc(n * sizeof *hits) : NULL;
  e->list.len = n;
  for (size_t k = 0; k < n; k++) {
    fg_policy_hit *h = &e->list.ptr[k];
    *h = hits[k];
    copy_string(&h->namespace_, &hits[k].namespace_);
    copy_string(&h->name, &hits[k].name);
    copy_string(&h->tier, &hits[k].tier);
    if (h->trigger.is_some) {
      copy_string(&h->trigger.val.namespace_, &hits[k].trigger.val.namespace_);
      copy_string(&h->trigger.val.name, &hits[k].trigger.val.name);
      copy_string(&h->trigger.val.tier, &hits[k].trigger.val.tier);
    }
  }
  e->fetched = true;
}

const fg_flow *fg_record(fg_batch *b, uint32_t i) {
  check(b, i);
  if (!b->records) b->records = xcalloc(b->len, sizeof *b->records);
  record_entry *e = &b->records[i];
  if (!e->fetched) {
    flowgate_transform_types_method_batch_record(b->handle, i, &e->flow);
    e->fetched = true;
  }
  return &e->flow;
}

// ---- Outcomes ------------------------------------------------------------------------------------------------

fg_outcome_t *fg_outcome(fg_batch *b, uint32_t i) {
  check(b, i);
  return &b->outcomes[i];
}

void fg_keep(fg_batch *b, uint32_t i) { free_outcome(fg_outcome(b, i)); }

void fg_drop(fg_batch *b, uint32_t i) {
  fg_outcome_t *o = fg_outcome(b, i);
  free_outcome(o);
  o->tag = FLOWGATE_TRANSFORM_TYPES_OUTCOME_DROP;
}

static transformer_string_t owned(const char *s) {
  size_t len = strlen(s);
  return (transformer_string_t){len ? (uint8_t *)dup_n(s, len) : NULL, len};
}

static char *vformat(const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  char *out = xmalloc(n > 0 ? (size_t)n + 1 : 1);
  vsnprintf(out, n > 0 ? (size_t)n + 1 : 1, fmt, ap);
  return out;
}

void fg_error(fg_batch *b, uint32_t i, const char *fmt, ...) {
  fg_outcome_t *o = fg_outcome(b, i);
  free_outcome(o);
  va_list ap;
  va_start(ap, fmt);
  char *message = vformat(fmt, ap);
  va_end(ap);
  o->tag = FLOWGATE_TRANSFORM_TYPES_OUTCOME_ERROR;
  o->val.error = owned(message);
  free(message);
}

static flowgate_transform_types_annotations_t *annotations(fg_batch *b, uint32_t i) {
  fg_outcome_t *o = fg_outcome(b, i);
  if (o->tag != FLOWGATE_TRANSFORM_TYPES_OUTCOME_ANNOTATE) {
    free_outcome(o);
    o->tag = FLOWGATE_TRANSFORM_TYPES_OUTCOME_ANNOTATE;
  }
  return &o->val.annotate;
}

static void attr(fg_batch *b, uint32_t i, const char *key, flowgate_transform_types_value_t value) {
  flowgate_transform_types_list_attribute_t *l = &annotations(b, i)->attributes;
  l->ptr = realloc(l->len ? l->ptr : NULL, (l->len + 1) * sizeof *l->ptr);
  if (!l->ptr) abort();
  l->ptr[l->len++] = (flowgate_transform_types_attribute_t){owned(key), value};
}

void fg_attr_str(fg_batch *b, uint32_t i, const char *key, const char *value) {
  flowgate_transform_types_value_t v = {.tag = FLOWGATE_TRANSFORM_TYPES_VALUE_STR};
  v.val.str = owned(value);
  attr(b, i, key, v);
}

void fg_attr_int(fg_batch *b, uint32_t i, const char *key, int64_t value) {
  flowgate_transform_types_value_t v = {.tag = FLOWGATE_TRANSFORM_TYPES_VALUE_INT};
  v.val.int_ = value;
  attr(b, i, key, v);
}

void fg_attr_float(fg_batch *b, uint32_t i, const char *key, double value) {
  flowgate_transform_types_value_t v = {.tag = FLOWGATE_TRANSFORM_TYPES_VALUE_FLOAT};
  v.val.float_ = value;
  attr(b, i, key, v);
}

void fg_attr_bool(fg_batch *b, uint32_t i, const char *key, bool value) {
  flowgate_transform_types_value_t v = {.tag = FLOWGATE_TRANSFORM_TYPES_VALUE_BOOLEAN};
  v.val.boolean = value;
  attr(b, i, key, v);
}

void fg_severity(fg_batch *b, uint32_t i, fg_severity_t severity) {
  flowgate_transform_types_annotations_t *a = annotations(b, i);
  a->severity.is_some = true;
  a->severity.val = severity;
}

static flowgate_transform_types_body_t *body(fg_batch *b, uint32_t i) {
  flowgate_transform_types_annotations_t *a = annotations(b, i);
  if (a->body.is_some) {
    if (a->body.val.tag == FLOWGATE_TRANSFORM_TYPES_BODY_STRUCTURED) free_attributes(&a->body.val.val.structured);
    if (a->body.val.tag == FLOWGATE_TRANSFORM_TYPES_BODY_TEXT) free_string(&a->body.val.val.text);
  }
  memset(&a->body, 0, sizeof a->body);
  a->body.is_some = true;
  return &a->body.val;
}

void fg_body_text(fg_batch *b, uint32_t i, const char *text) {
  flowgate_transform_types_body_t *v = body(b, i);
  v->tag = FLOWGATE_TRANSFORM_TYPES_BODY_TEXT;
  v->val.text = owned(text);
}

void fg_body_attributes(fg_batch *b, uint32_t i) { body(b, i)->tag = FLOWGATE_TRANSFORM_TYPES_BODY_ATTRIBUTES; }

// ---- Host ----------------------------------------------------------------------------------------------------

void fg_log(fg_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *message = vformat(fmt, ap);
  va_end(ap);
  transformer_string_t s = {(uint8_t *)message, strlen(message)};
  flowgate_transform_host_log(level, &s);
  free(message);
}

void fg_counter_add(const char *name, uint64_t delta) {
  transformer_string_t s = {(uint8_t *)name, strlen(name)};
  flowgate_transform_host_counter_add(&s, delta);
}

// ---- Config --------------------------------------------------------------------------------------------------

struct fg_config {
  size_t n;
  char **keys, **values;
  bool *read_pair;       // per pair: was its key read
  char **reads;          // every key asked for (present or not), distinct
  size_t n_reads;
  fg_list *lists;        // what fg_config_list handed out, freed at the end
  size_t n_lists;
  char *error;
};

static void note_read(fg_config *c, const char *key) {
  for (size_t k = 0; k < c->n; k++)
    if (!strcmp(c->keys[k], key)) c->read_pair[k] = true;
  for (size_t k = 0; k < c->n_reads; k++)
    if (!strcmp(c->reads[k], key)) return;
  c->reads = realloc(c->reads, (c->n_reads + 1) * sizeof *c->reads);
  if (!c->reads) abort();
  c->reads[c->n_reads++] = dup_n(key, strlen(key));
}

const char *fg_config_get(fg_config *c, const char *key) {
  note_read(c, key);
  for (size_t k = c->n; k-- > 0;)
    if (!strcmp(c->keys[k], key)) return c->values[k];
  return NULL;
}

fg_list fg_config_list(fg_config *c, const char *key) {
  const char *value = fg_config_get(c, key);
  fg_list out = {NULL, 0};
  if (!value) return out;
  out.items = xmalloc((strlen(value) / 2 + 1) * sizeof *out.items);  // at most one item per two bytes
  for (const char *p = value; *p;) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *s = p, *e = end;
    while (s < e && *s == ' ') s++;
    while (e > s && e[-1] == ' ') e--;
    if (e > s) out.items[out.len++] = dup_n(s, (size_t)(e - s));
    p = *end ? end + 1 : end;
  }
  c->lists = realloc(c->lists, (c->n_lists + 1) * sizeof *c->lists);
  if (!c->lists) abort();
  c->lists[c->n_lists++] = out;
  return out;
}

bool fg_fail(fg_config *c, const char *fmt, ...) {
  if (!c->error) {
    va_list ap;
    va_start(ap, fmt);
    c->error = vformat(fmt, ap);
    va_end(ap);
  }
  return false;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// `unknown config key "x"; this transform reads: a, b` for the keys never read (sorted, once each).
static char *unknown_keys(fg_config *c) {
  char **unknown = xmalloc(c->n * sizeof *unknown);
  size_t n = 0;
  for (size_t k = 0; k < c->n; k++) {
    if (c->read_pair[k]) continue;
    bool seen = false;
    for (size_t j = 0; j < n; j++) seen |= !strcmp(unknown[j], c->keys[k]);
    if (!seen) unknown[n++] = c->keys[k];
  }
  if (!n) {
    free(unknown);
    return NULL;
  }
  qsort(unknown, n, sizeof *unknown, by_name);
  qsort(c->reads, c->n_reads, sizeof *c->reads, by_name);
  size_t size = 64;
  for (size_t j = 0; j < n; j++) size += strlen(unknown[j]) + 4;
  for (size_t j = 0; j < c->n_reads; j++) size += strlen(c->reads[j]) + 2;
  char *out = xmalloc(size), *p = out;
  p += sprintf(p, "unknown config key%s ", n > 1 ? "s" : "");
  for (size_t j = 0; j < n; j++) p += sprintf(p, "%s\"%s\"", j ? ", " : "", unknown[j]);
  if (!c->n_reads) p += sprintf(p, "; this transform reads no keys");
  else p += sprintf(p, "; this transform reads: ");
  for (size_t j = 0; j < c->n_reads; j++) p += sprintf(p, "%s%s", j ? ", " : "", c->reads[j]);
  free(unknown);
  return out;
}

// ---- The generated exports -------------------------------------------------------------------------------------

bool exports_flowgate_transform_transform_init(transformer_list_tuple2_string_string_t *config,
                                               transformer_string_t *err) {
  fg_config c = {.n = config->len};
  c.keys = xmalloc(c.n * sizeof *c.keys);
  c.values = xmalloc(c.n * sizeof *c.values);
  c.read_pair = xcalloc(c.n, sizeof *c.read_pair);
  for (size_t k = 0; k < c.n; k++) {
    c.keys[k] = dup_n((const char *)config->ptr[k].f0.ptr, config->ptr[k].f0.len);
    c.values[k] = dup_n((const char *)config->ptr[k].f1.ptr, config->ptr[k].f1.len);
    free_string(&config->ptr[k].f0);
    free_string(&config->ptr[k].f1);
  }
  if (config->len) free(config->ptr);

  bool ok = fg_init(&c);
  if (ok) {
    char *unknown = unknown_keys(&c);
    if (unknown) ok = fg_fail(&c, "%s", unknown);
    free(unknown);
  } else if (!c.error) {
    fg_fail(&c, "init failed");
  }
  if (!ok) *err = owned(c.error);

  for (size_t k = 0; k < c.n; k++) free(c.keys[k]), free(c.values[k]);
  for (size_t k = 0; k < c.n_reads; k++) free(c.reads[k]);
  for (size_t k = 0; k < c.n_lists; k++) {
    for (size_t j = 0; j < c.lists[k].len; j++) free(c.lists[k].items[j]);
    free(c.lists[k].items);
  }
  free(c.keys), free(c.values), free(c.read_pair), free(c.reads), free(c.lists), free(c.error);
  return ok;
}

void exports_flowgate_transform_transform_process(exports_flowgate_transform_transform_borrow_batch_t batch,
                                                  exports_flowgate_transform_transform_list_outcome_t *ret) {
  fg_batch *b = fg_batch_open(batch.__handle);
  fg_process(b);
  ret->ptr = fg_batch_close(b, &ret->len);
  // A borrow received by an export must be dropped before it returns (wit-bindgen c does not by default;
  // wasmtime fails the call with "borrow handles still remain at the end of the call").
  flowgate_transform_types_batch_drop_borrow(batch);
}
