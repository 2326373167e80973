// `filter`, in C (clang + wasi-libc + wit-bindgen c + the preview1 adapter): the same behaviour as
// transforms/filter (Rust).
//
// Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
// namespace), `ports` (keep only these destination ports). The host owns nothing we are given: every argument
// is freed here; returned lists are malloc'd and freed by the generated post-return code.
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transformer.h"

#define MAX_ITEMS 32

static flowgate_transform_types_action_t actions[MAX_ITEMS];
static size_t n_actions;
static char *drop_namespaces[MAX_ITEMS];
static size_t n_drop;
static int64_t ports[MAX_ITEMS];
static size_t n_ports;

// A NUL-terminated copy of a WIT string.
static char *cstr(const transformer_string_t *s) {
  char *out = malloc(s->len + 1);
  memcpy(out, s->ptr, s->len);
  out[s->len] = 0;
  return out;
}

static bool fail(transformer_string_t *err, const char *message) {
  transformer_string_dup(err, message);
  return false;
}

// Splits `value` on commas, calling `item` for each trimmed, non-empty piece; false stops with an error.
static bool each_item(char *value, bool (*item)(const char *, transformer_string_t *), transformer_string_t *err) {
  for (char *tok = strtok(value, ","); tok; tok = strtok(NULL, ",")) {
    while (*tok == ' ') tok++;
    char *end = tok + strlen(tok);
    while (end > tok && end[-1] == ' ') *--end = 0;
    if (*tok && !item(tok, err)) return false;
  }
  return true;
}

static bool add_action(const char *a, transformer_string_t *err) {
  if (n_actions == MAX_ITEMS) return fail(err, "actions: too many");
  if (!strcmp(a, "Allow")) actions[n_actions++] = FLOWGATE_TRANSFORM_TYPES_ACTION_ALLOW;
  else if (!strcmp(a, "Deny")) actions[n_actions++] = FLOWGATE_TRANSFORM_TYPES_ACTION_DENY;
  else if (!strcmp(a, "Pass")) actions[n_actions++] = FLOWGATE_TRANSFORM_TYPES_ACTION_PASS;
  else {
    char message[128];
    snprintf(message, sizeof message, "actions: \"%s\" is not Allow, Deny or Pass", a);
    return fail(err, message);
  }
  return true;
}

static bool add_namespace(const char *g, transformer_string_t *err) {
  if (n_drop == MAX_ITEMS) return fail(err, "drop_namespaces: too many");
  drop_namespaces[n_drop++] = strdup(g);
  return true;
}

static bool add_port(const char *p, transformer_string_t *err) {
  char *end;
  long long port = strtoll(p, &end, 10);
  if (*end || n_ports == MAX_ITEMS) return fail(err, "ports: not a list of port numbers");
  ports[n_ports++] = port;
  return true;
}

bool exports_flowgate_transform_transform_init(transformer_list_tuple2_string_string_t *config,
                                               transformer_string_t *err) {
  bool ok = true;
  for (size_t i = 0; ok && i < config->len; i++) {
    char *key = cstr(&config->ptr[i].f0), *value = cstr(&config->ptr[i].f1);
    if (!strcmp(key, "actions")) ok = each_item(value, add_action, err);
    else if (!strcmp(key, "drop_namespaces")) ok = each_item(value, add_namespace, err);
    else if (!strcmp(key, "ports")) ok = each_item(value, add_port, err);
    free(key);
    free(value);
  }
  transformer_list_tuple2_string_string_free(config);
  if (ok) {
    transformer_string_t line;
    transformer_string_set(&line, "c filter ready");
    flowgate_transform_host_log(FLOWGATE_TRANSFORM_HOST_LEVEL_INFO, &line);
  }
  return ok;
}

static bool matches_any(const transformer_string_t *ns) {
  if (n_drop == 0) return false;
  char *s = cstr(ns);
  bool hit = false;
  for (size_t i = 0; i < n_drop && !hit; i++) hit = fnmatch(drop_namespaces[i], s, 0) == 0;
  free(s);
  return hit;
}

static bool keep(const flowgate_transform_types_flow_t *f) {
  if (n_actions) {
    bool found = false;
    for (size_t i = 0; i < n_actions; i++) found |= actions[i] == f->action;
    if (!found) return false;
  }
  if (matches_any(&f->source_namespace) || matches_any(&f->dest_namespace)) return false;
  if (n_ports) {
    bool found = false;
    for (size_t i = 0; i < n_ports; i++) found |= ports[i] == f->dest_port;
    if (!found) return false;
  }
  return true;
}

void exports_flowgate_transform_transform_process(exports_flowgate_transform_transform_list_flow_t *batch,
                                                  exports_flowgate_transform_transform_list_outcome_t *ret) {
  ret->len = batch->len;
  ret->ptr = calloc(batch->len ? batch->len : 1, sizeof *ret->ptr);
  for (size_t i = 0; i < batch->len; i++) {
    ret->ptr[i].tag = keep(&batch->ptr[i]) ? FLOWGATE_TRANSFORM_TYPES_OUTCOME_KEEP : FLOWGATE_TRANSFORM_TYPES_OUTCOME_DROP;
  }
  exports_flowgate_transform_transform_list_flow_free(batch);
}
