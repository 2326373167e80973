//! Any flow prost accepts renders to JSON that reads back as the same flow (the transform path's renderer).
#![no_main]

/// The old exporter's body always carries `Key.policies` (`{}` when empty), so an absent trace and an empty one
/// render alike: compare with the absent one made empty.
fn normalized(mut f: flowgate_core::proto::Flow) -> flowgate_core::proto::Flow {
    if let Some(k) = f.key.as_mut() {
        k.policies.get_or_insert_with(Default::default);
    }
    f
}

use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(flow) = flowgate_core::proto::Flow::decode(data) else { return };
    let body = flowgate_core::render::flow_json_string(&flow);
    let parsed = flowgate_core::protojson::flow_from_json(&body).expect("rendered JSON reads back");
    assert_eq!(parsed, normalized(flow));
});
