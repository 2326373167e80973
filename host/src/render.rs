//! The old exporter's log body: protobuf-JSON ("protojson") of `goldmane.Flow`, written by hand for speed.
//!
//! The rules, from `shared/reference/seed-exporter.md`, are the whole contract users' Loki queries and SIEM
//! parsers depend on:
//! - proto JSON names in lowerCamelCase, except the top-level key field, which is `Key`;
//! - int64 as JSON strings, enums as value names, an enum number the schema does not know as a bare number;
//! - zero values omitted (0, "", the `…Unspecified` enum value, empty lists), fields in declaration order;
//! - `Key.policies` always present (`{}` when both lists are empty), as Goldmane always sets it.
//!
//! Tests compare the output with an independent protojson implementation (prost-reflect) on generated flows.

use crate::proto::{Action, EndpointType, Flow, FlowKey, PolicyHit, PolicyKind, PolicyTrace, Reporter};

/// Renders `flow` as the old exporter's JSON body, appending to `out`.
pub fn flow_json(flow: &Flow, out: &mut String) {
    let mut o = Obj::open(out);
    if let Some(key) = &flow.key {
        o.key("Key");
        flow_key(key, o.out);
    }
    o.int("startTime", flow.start_time);
    o.int("endTime", flow.end_time);
    o.strings("sourceLabels", &flow.source_labels);
    o.strings("destLabels", &flow.dest_labels);
    o.int("packetsIn", flow.packets_in);
    o.int("packetsOut", flow.packets_out);
    o.int("bytesIn", flow.bytes_in);
    o.int("bytesOut", flow.bytes_out);
    o.int("numConnectionsStarted", flow.num_connections_started);
    o.int("numConnectionsCompleted", flow.num_connections_completed);
    o.int("numConnectionsLive", flow.num_connections_live);
    o.close();
}

/// Renders `flow` into a new string.
pub fn flow_json_string(flow: &Flow) -> String {
    let mut out = String::with_capacity(1024);
    flow_json(flow, &mut out);
    out
}

fn flow_key(k: &FlowKey, out: &mut String) {
    let mut o = Obj::open(out);
    o.str("sourceName", &k.source_name);
    o.str("sourceNamespace", &k.source_namespace);
    o.enumeration("sourceType", k.source_type, endpoint_type_name);
    o.str("destName", &k.dest_name);
    o.str("destNamespace", &k.dest_namespace);
    o.enumeration("destType", k.dest_type, endpoint_type_name);
    o.int("destPort", k.dest_port);
    o.str("destServiceName", &k.dest_service_name);
    o.str("destServiceNamespace", &k.dest_service_namespace);
    o.str("destServicePortName", &k.dest_service_port_name);
    o.int("destServicePort", k.dest_service_port);
    o.str("proto", &k.proto);
    o.enumeration("reporter", k.reporter, reporter_name);
    o.enumeration("action", k.action, action_name);
    o.key("policies");
    policy_trace(k.policies.as_ref(), o.out);
    o.close();
}

fn policy_trace(t: Option<&PolicyTrace>, out: &mut String) {
    let mut o = Obj::open(out);
    if let Some(t) = t {
        o.hits("enforcedPolicies", &t.enforced_policies);
        o.hits("pendingPolicies", &t.pending_policies);
    }
    o.close();
}

fn policy_hit(h: &PolicyHit, out: &mut String) {
    let mut o = Obj::open(out);
    o.enumeration("kind", h.kind, policy_kind_name);
    o.str("namespace", &h.namespace);
    o.str("name", &h.name);
    o.str("tier", &h.tier);
    o.enumeration("action", h.action, action_name);
    o.int("policyIndex", h.policy_index);
    o.int("ruleIndex", h.rule_index);
    if let Some(trigger) = &h.trigger {
        o.key("trigger");
        policy_hit(trigger, o.out);
    }
    o.close();
}

/// The proto name of a known, non-zero enum value. Zero is never rendered, so it maps to `None` too.
fn known_name<E: TryFrom<i32>>(n: i32, name: impl Fn(E) -> &'static str) -> Option<&'static str> {
    if n == 0 {
        return None;
    }
    E::try_from(n).ok().map(name)
}

fn action_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: Action| e.as_str_name())
}
fn endpoint_type_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: EndpointType| e.as_str_name())
}
fn reporter_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: Reporter| e.as_str_name())
}
fn policy_kind_name(n: i32) -> Option<&'static str> {
    known_name(n, |e: PolicyKind| e.as_str_name())
}

/// A JSON object being written: tracks whether a comma is due.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    fn close(self) {
        self.out.push('}');
    }

    fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    fn str(&mut self, name: &str, v: &str) {
        if !v.is_empty() {
            self.key(name);
            push_json_string(self.out, v);
        }
    }

    /// int64 fields are JSON strings in protojson.
    fn int(&mut self, name: &str, v: i64) {
        if v != 0 {
            self.key(name);
            self.out.push('"');
            self.out.push_str(itoa::Buffer::new().format(v));
            self.out.push('"');
        }
    }

    fn enumeration(&mut self, name: &str, v: i32, names: fn(i32) -> Option<&'static str>) {
        if v == 0 {
            return;
        }
        self.key(name);
        match names(v) {
            Some(n) => {
                self.out.push('"');
                self.out.push_str(n);
                self.out.push('"');
            }
            // Proto3 enums are open: an unknown number is kept and rendered bare.
            None => self.out.push_str(itoa::Buffer::new().format(v)),
        }
    }

    fn strings(&mut self, name: &str, vs: &[String]) {
        if vs.is_empty() {
            return;
        }
        self.key(name);
        self.out.push('[');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_json_string(self.out, v);
        }
        self.out.push(']');
    }

    fn hits(&mut self, name: &str, hits: &[PolicyHit]) {
        if hits.is_empty() {
            return;
        }
        self.key(name);
        self.out.push('[');
        for (i, h) in hits.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            policy_hit(h, self.out);
        }
        self.out.push(']');
    }
}

/// Appends `s` as a JSON string literal. Copies unescaped runs whole; escapes `"`, `\` and control characters.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Runs between escapes are whole UTF-8 sequences: every byte escaped here is ASCII.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_quotes_and_backslashes() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é\u{7f}""#.replace("\\u{7f}", "\u{7f}"));
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é\u{7f}");
    }

    #[test]
    fn empty_flow_renders_empty_object_and_policies_always_present_under_key() {
        assert_eq!(flow_json_string(&Flow::default()), "{}");
        let flow = Flow { key: Some(FlowKey::default()), ..Flow::default() };
        assert_eq!(flow_json_string(&flow), r#"{"Key":{"policies":{}}}"#);
    }

    #[test]
    fn unknown_enum_numbers_render_bare() {
        let flow = Flow { key: Some(FlowKey { action: 42, source_type: -3, ..FlowKey::default() }), ..Flow::default() };
        assert_eq!(flow_json_string(&flow), r#"{"Key":{"sourceType":-3,"action":42,"policies":{}}}"#);
    }
}
