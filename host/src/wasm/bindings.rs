//! The host side of `wit/transform.wit`, generated here and nowhere else.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "flowgate:transform/transformer",
    require_store_data_send: true,
    // Host functions may trap (a flow position out of range).
    imports: { default: trappable },
    with: { "flowgate:transform/types.batch": super::batch::FlowBatch },
});

pub use self::flowgate::transform::{host, types};
