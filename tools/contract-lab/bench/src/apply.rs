//! What the host does with a transform's answers, the same for both candidates: changes applied to the flow's
//! bytes, annotations accumulated, and the OTLP record rendered from the bytes at the end of the chain.

use bytes::Bytes;
use flowgate::otlp::flow_record;
use flowgate::proto::{Flow, PolicyHit};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;

/// One changed field: a `FlowKey` string field by its protobuf number, a label list (4 source, 5 dest), or a
/// policy list (1 enforced, 2 pending).
pub enum Change {
    Str(u32, String),
    Labels(u32, Vec<String>),
    Policies(u32, Vec<PolicyHit>),
}

/// The flow's bytes with `changes` applied. Lab shortcut: prost decode, assign, encode (timed as its own stage;
/// splicing the changed fields into the bytes would cost a copy of the flow).
pub fn apply(wire: &[u8], changes: Vec<Change>) -> Bytes {
    let mut f = Flow::decode(wire).expect("the host indexed these bytes");
    let k = f.key.get_or_insert_default();
    for c in changes {
        match c {
            Change::Str(n, v) => {
                *match n {
                    1 => &mut k.source_name,
                    2 => &mut k.source_namespace,
                    4 => &mut k.dest_name,
                    5 => &mut k.dest_namespace,
                    8 => &mut k.dest_service_name,
                    9 => &mut k.dest_service_namespace,
                    10 => &mut k.dest_service_port_name,
                    _ => &mut k.proto,
                } = v
            }
            Change::Labels(4, v) => f.source_labels = v,
            Change::Labels(_, v) => f.dest_labels = v,
            Change::Policies(n, v) => {
                let t = k.policies.get_or_insert_default();
                if n == 1 { t.enforced_policies = v } else { t.pending_policies = v }
            }
        }
    }
    Bytes::from(f.encode_to_vec())
}

/// Annotations accumulated along the chain: a later key replaces an earlier one, a later severity or body wins.
#[derive(Default)]
pub struct Ann {
    pub attributes: Vec<KeyValue>,
    pub severity: Option<(i32, &'static str)>,
    /// `Some` replaces the flow's JSON.
    pub body: Option<AnyValue>,
}

impl Ann {
    pub fn attr(&mut self, key: String, value: AnyValue) {
        match self.attributes.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = Some(value),
            None => self.attributes.push(KeyValue { key, value: Some(value), ..KeyValue::default() }),
        }
    }

    /// The record: the body rendered from the flow's bytes unless a transform set another.
    pub fn finish(self, wire: &[u8], now: u64) -> LogRecord {
        let mut rec = match self.body {
            None => flow_record(wire, now).expect("renderable"),
            Some(body) => LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                severity_number: 9,
                severity_text: "INFO".to_string(),
                body: Some(body),
                ..LogRecord::default()
            },
        };
        if let Some((n, text)) = self.severity {
            rec.severity_number = n;
            rec.severity_text = text.to_string();
        }
        rec.attributes = self.attributes;
        rec
    }
}

pub fn str_value(s: String) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(s)) }
}

pub fn int_value(i: i64) -> AnyValue {
    AnyValue { value: Some(any_value::Value::IntValue(i)) }
}

pub fn float_value(f: f64) -> AnyValue {
    AnyValue { value: Some(any_value::Value::DoubleValue(f)) }
}

pub fn bool_value(b: bool) -> AnyValue {
    AnyValue { value: Some(any_value::Value::BoolValue(b)) }
}

pub fn list_value(l: Vec<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue { values: l.into_iter().map(str_value).collect() })),
    }
}

pub fn kvlist_value(values: Vec<KeyValue>) -> AnyValue {
    AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values })) }
}

/// Converts one candidate's generated annotation types (the same WIT in both) into [`Ann`] and its policy hits
/// into prost's.
macro_rules! convert {
    ($types:path) => {
        mod convert {
            use $types as t;

            fn value(v: t::Value) -> opentelemetry_proto::tonic::common::v1::AnyValue {
                use crate::apply::*;
                match v {
                    t::Value::Str(s) => str_value(s),
                    t::Value::Int(i) => int_value(i),
                    t::Value::Float(f) => float_value(f),
                    t::Value::Boolean(b) => bool_value(b),
                    t::Value::StrList(l) => list_value(l),
                }
            }

            /// Adds `a` to what earlier transforms set.
            pub fn annotate(into: &mut crate::apply::Ann, a: t::Annotations) {
                for attr in a.attributes {
                    into.attr(attr.key, value(attr.value));
                }
                if let Some(s) = a.severity {
                    into.severity = Some(match s {
                        t::Severity::Trace => (1, "TRACE"),
                        t::Severity::Debug => (5, "DEBUG"),
                        t::Severity::Info => (9, "INFO"),
                        t::Severity::Warn => (13, "WARN"),
                        t::Severity::Error => (17, "ERROR"),
                        t::Severity::Fatal => (21, "FATAL"),
                    });
                }
                match a.body {
                    None | Some(t::Body::FlowJson) => {}
                    Some(t::Body::Text(s)) => into.body = Some(crate::apply::str_value(s)),
                    Some(t::Body::Structured(attrs)) => {
                        let kvs = attrs
                            .into_iter()
                            .map(|a| opentelemetry_proto::tonic::common::v1::KeyValue {
                                key: a.key,
                                value: Some(value(a.value)),
                                ..Default::default()
                            })
                            .collect();
                        into.body = Some(crate::apply::kvlist_value(kvs));
                    }
                }
            }

            fn one_hit(h: t::PolicyHit) -> flowgate::proto::PolicyHit {
                flowgate::proto::PolicyHit {
                    kind: h.kind as i32,
                    namespace: h.namespace,
                    name: h.name,
                    tier: h.tier,
                    action: h.action as i32,
                    policy_index: h.policy_index,
                    rule_index: h.rule_index,
                    trigger: h.trigger.map(|tr| {
                        Box::new(flowgate::proto::PolicyHit {
                            kind: tr.kind as i32,
                            namespace: tr.namespace,
                            name: tr.name,
                            tier: tr.tier,
                            action: tr.action as i32,
                            policy_index: tr.policy_index,
                            rule_index: tr.rule_index,
                            trigger: None,
                        })
                    }),
                }
            }

            /// Policy hits as prost's. Lab shortcut: enum numbers are the WIT cases' positions, which match the
            /// protobuf numbers for every named case; `unknown` is not restored from the original here.
            pub fn hits(hs: Vec<t::PolicyHit>) -> Vec<flowgate::proto::PolicyHit> {
                hs.into_iter().map(one_hit).collect()
            }
        }
        use convert::{annotate, hits};
    };
}
pub(crate) use convert;
