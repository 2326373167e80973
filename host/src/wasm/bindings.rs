//! The host side of `wit/transform.wit`, generated here and nowhere else.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "flowgate:transform/transformer",
    require_store_data_send: true,
});

pub use self::flowgate::transform::{host, types};
