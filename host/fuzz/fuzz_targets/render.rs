//! Any flow prost accepts renders to JSON that reads back as the same flow (the transform path's renderer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(flow) = flowgate::proto::Flow::decode(data) else { return };
    let body = flowgate::render::flow_json_string(&flow);
    let parsed = flowgate::protojson::flow_from_json(&body).expect("rendered JSON reads back");
    assert_eq!(parsed, flow);
});
