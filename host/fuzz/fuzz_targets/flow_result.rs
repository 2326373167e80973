//! Bytes off the Goldmane stream: splitting a `FlowResult` and rendering its flow from the wire never panics, and
//! whatever renders is JSON that reads back as the flow prost decodes from the same bytes.
#![no_main]

/// The old exporter's body always carries `Key.policies` (`{}` when empty), so an absent trace and an empty one
/// render alike: compare with the absent one made empty.
fn normalized(mut f: flowgate_core::proto::Flow) -> flowgate_core::proto::Flow {
    if let Some(k) = f.key.as_mut() {
        k.policies.get_or_insert_with(Default::default);
    }
    f
}

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let result = Bytes::copy_from_slice(data);
    let Ok(Some(raw)) = flowgate_core::wire::flow_of_result(result) else { return };
    let mut body = String::new();
    if flowgate_core::render::flow_json_from_wire(&raw.wire, &mut body).is_err() {
        return;
    }
    serde_json::from_str::<serde_json::Value>(&body).expect("the renderer wrote invalid JSON");
    let decoded = flowgate_core::proto::Flow::decode(raw.wire.as_ref()).expect("rendered, so prost decodes it too");
    let parsed = flowgate_core::protojson::flow_from_json(&body).expect("our JSON reads back");
    assert_eq!(parsed, normalized(decoded), "wire rendering and prost disagree");
});
