//! Reading the old exporter's JSON body back into a `goldmane.Flow`: a body copied from Loki is a test case for
//! `flowgate test`. Accepts what protojson accepts for this schema: lowerCamelCase or original field names,
//! int64 as strings or numbers, enums as names or numbers.

use serde_json::{Map, Value};

use crate::proto::{Action, EndpointType, Flow, FlowKey, PolicyHit, PolicyKind, PolicyTrace, Reporter};

/// Parses one body.
pub fn flow_from_json(text: &str) -> Result<Flow, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("a flow is a JSON object")?;
    Ok(Flow {
        key: field(o, "Key", "Key").map(key).transpose()?,
        start_time: int(o, "startTime", "start_time")?,
        end_time: int(o, "endTime", "end_time")?,
        source_labels: strings(o, "sourceLabels", "source_labels")?,
        dest_labels: strings(o, "destLabels", "dest_labels")?,
        packets_in: int(o, "packetsIn", "packets_in")?,
        packets_out: int(o, "packetsOut", "packets_out")?,
        bytes_in: int(o, "bytesIn", "bytes_in")?,
        bytes_out: int(o, "bytesOut", "bytes_out")?,
        num_connections_started: int(o, "numConnectionsStarted", "num_connections_started")?,
        num_connections_completed: int(o, "numConnectionsCompleted", "num_connections_completed")?,
        num_connections_live: int(o, "numConnectionsLive", "num_connections_live")?,
    })
}

fn field<'a>(o: &'a Map<String, Value>, json: &str, proto: &str) -> Option<&'a Value> {
    o.get(json).or_else(|| o.get(proto)).filter(|v| !v.is_null())
}

fn key(v: &Value) -> Result<FlowKey, String> {
    let o = v.as_object().ok_or("Key is not an object")?;
    let trace = match field(o, "policies", "policies") {
        Some(p) => {
            let p = p.as_object().ok_or("policies is not an object")?;
            Some(PolicyTrace {
                enforced_policies: hits(p, "enforcedPolicies", "enforced_policies")?,
                pending_policies: hits(p, "pendingPolicies", "pending_policies")?,
            })
        }
        None => None,
    };
    Ok(FlowKey {
        source_name: string(o, "sourceName", "source_name")?,
        source_namespace: string(o, "sourceNamespace", "source_namespace")?,
        source_type: enumeration(o, "sourceType", "source_type", |s| EndpointType::from_str_name(s).map(|e| e as i32))?,
        dest_name: string(o, "destName", "dest_name")?,
        dest_namespace: string(o, "destNamespace", "dest_namespace")?,
        dest_type: enumeration(o, "destType", "dest_type", |s| EndpointType::from_str_name(s).map(|e| e as i32))?,
        dest_port: int(o, "destPort", "dest_port")?,
        dest_service_name: string(o, "destServiceName", "dest_service_name")?,
        dest_service_namespace: string(o, "destServiceNamespace", "dest_service_namespace")?,
        dest_service_port_name: string(o, "destServicePortName", "dest_service_port_name")?,
        dest_service_port: int(o, "destServicePort", "dest_service_port")?,
        proto: string(o, "proto", "proto")?,
        reporter: enumeration(o, "reporter", "reporter", |s| Reporter::from_str_name(s).map(|e| e as i32))?,
        action: enumeration(o, "action", "action", |s| Action::from_str_name(s).map(|e| e as i32))?,
        policies: trace,
    })
}

fn hits(o: &Map<String, Value>, json: &str, proto: &str) -> Result<Vec<PolicyHit>, String> {
    match field(o, json, proto) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(hit).collect(),
        Some(_) => Err(format!("{json} is not a list")),
    }
}

fn hit(v: &Value) -> Result<PolicyHit, String> {
    let o = v.as_object().ok_or("a policy hit is not an object")?;
    Ok(PolicyHit {
        kind: enumeration(o, "kind", "kind", |s| PolicyKind::from_str_name(s).map(|e| e as i32))?,
        namespace: string(o, "namespace", "namespace")?,
        name: string(o, "name", "name")?,
        tier: string(o, "tier", "tier")?,
        action: enumeration(o, "action", "action", |s| Action::from_str_name(s).map(|e| e as i32))?,
        policy_index: int(o, "policyIndex", "policy_index")?,
        rule_index: int(o, "ruleIndex", "rule_index")?,
        trigger: field(o, "trigger", "trigger").map(hit).transpose()?.map(Box::new),
    })
}

fn string(o: &Map<String, Value>, json: &str, proto: &str) -> Result<String, String> {
    match field(o, json, proto) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{json}: {other} is not a string")),
    }
}

fn strings(o: &Map<String, Value>, json: &str, proto: &str) -> Result<Vec<String>, String> {
    match field(o, json, proto) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(String::from).ok_or_else(|| format!("{json}: {i} is not a string")))
            .collect(),
        Some(other) => Err(format!("{json}: {other} is not a list")),
    }
}

fn int(o: &Map<String, Value>, json: &str, proto: &str) -> Result<i64, String> {
    match field(o, json, proto) {
        None => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{json}: {s:?} is not an int64")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{json}: {n} is not an int64")),
        Some(other) => Err(format!("{json}: {other} is not an int64")),
    }
}

fn enumeration(
    o: &Map<String, Value>,
    json: &str,
    proto: &str,
    by_name: fn(&str) -> Option<i32>,
) -> Result<i32, String> {
    match field(o, json, proto) {
        None => Ok(0),
        Some(Value::String(s)) => by_name(s).ok_or_else(|| format!("{json}: {s:?} is not a value of this enum")),
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| format!("{json}: {n}")),
        Some(other) => Err(format!("{json}: {other} is not an enum value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flowgen::FlowGen;
    use crate::render::flow_json_string;

    #[test]
    fn reads_back_what_the_renderer_writes() {
        let flows = FlowGen { seed: 12, keys: 300 }.bucket(1_764_970_845);
        for flow in flows {
            assert_eq!(flow_from_json(&flow_json_string(&flow)).unwrap(), flow);
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(flow_from_json(r#"{"bytesIn":"many"}"#).unwrap_err().contains("bytesIn"));
        assert!(flow_from_json(r#"{"Key":{"action":"Maybe"}}"#).unwrap_err().contains("action"));
        assert_eq!(flow_from_json(r#"{"Key":{"action":42}}"#).unwrap().key.unwrap().action, 42);
    }
}
