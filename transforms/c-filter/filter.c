// `filter`, in C (clang + wasi-libc + wit-bindgen c + the preview1 adapter, through flowgate.h): the same
// behaviour as transforms/filter (Rust), without its sampling.
//
// Config: `actions` (keep only these: Allow,Deny,Pass), `drop_namespaces` (globs against source and destination
// namespace), `ports` (keep only these destination ports). Any other key refuses the component.
//
// Cost: only the columns a decision needs are fetched (`actions` when actions are configured, the two namespace
// columns when globs are, `dest-port` when ports are), and each distinct namespace is matched once per batch.
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "flowgate.h"

#define MAX_ITEMS 32

static fg_action_t actions[MAX_ITEMS];
static size_t n_actions;
static char *drop_namespaces[MAX_ITEMS];
static size_t n_drop;
static int64_t ports[MAX_ITEMS];
static size_t n_ports;

bool fg_init(fg_config *config) {
  for (size_t k = 0; k < n_drop; k++) free(drop_namespaces[k]);
  n_actions = n_drop = n_ports = 0;
  fg_list l = fg_config_list(config, "actions");
  for (size_t k = 0; k < l.len; k++) {
    const char *a = l.items[k];
    if (n_actions == MAX_ITEMS) return fg_fail(config, "actions: too many");
    if (!strcmp(a, "Allow")) actions[n_actions++] = FG_ALLOW;
    else if (!strcmp(a, "Deny")) actions[n_actions++] = FG_DENY;
    else if (!strcmp(a, "Pass")) actions[n_actions++] = FG_PASS;
    else return fg_fail(config, "actions: \"%s\" is not Allow, Deny or Pass", a);
  }
  l = fg_config_list(config, "drop_namespaces");
  for (size_t k = 0; k < l.len; k++) {
    if (n_drop == MAX_ITEMS) return fg_fail(config, "drop_namespaces: too many");
    drop_namespaces[n_drop++] = strdup(l.items[k]);
  }
  l = fg_config_list(config, "ports");
  for (size_t k = 0; k < l.len; k++) {
    char *end;
    long long port = strtoll(l.items[k], &end, 10);
    if (*end || n_ports == MAX_ITEMS) return fg_fail(config, "ports: not a list of port numbers");
    ports[n_ports++] = port;
  }
  fg_log(FG_LOG_INFO, "c filter ready");
  return true;
}

static bool matches_any(const char *ns) {
  for (size_t k = 0; k < n_drop; k++)
    if (fnmatch(drop_namespaces[k], ns, 0) == 0) return true;
  return false;
}

// Marks in `drop` the flows whose `field` matches a glob, matching each distinct value once.
static void drop_by_namespace(fg_batch *b, fg_string_field field, bool *drop) {
  const fg_column *col = fg_strings(b, field);
  bool *hit = calloc(col->n_values ? col->n_values : 1, sizeof *hit);
  if (!hit) abort();
  for (size_t k = 0; k < col->n_values; k++) hit[k] = matches_any(col->values[k].ptr);
  for (size_t i = 0; i < col->len; i++) drop[i] |= hit[col->at[i]];
  free(hit);
}

void fg_process(fg_batch *b) {
  uint32_t n = fg_len(b);
  bool *drop = calloc(n ? n : 1, sizeof *drop);
  if (!drop) abort();
  if (n_drop) {
    drop_by_namespace(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_SOURCE_NAMESPACE, drop);
    drop_by_namespace(b, FLOWGATE_TRANSFORM_TYPES_STRING_FIELD_DEST_NAMESPACE, drop);
  }
  for (uint32_t i = 0; i < n; i++) {
    if (!drop[i] && n_actions) {
      bool found = false;
      for (size_t k = 0; k < n_actions; k++) found |= actions[k] == fg_action(b, i);
      drop[i] = !found;
    }
    if (!drop[i] && n_ports) {
      bool found = false;
      for (size_t k = 0; k < n_ports; k++) found |= ports[k] == fg_dest_port(b, i);
      drop[i] = !found;
    }
    if (drop[i]) fg_drop(b, i);
  }
  free(drop);
}
