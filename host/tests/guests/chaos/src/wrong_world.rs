//! A WASI command component: valid WebAssembly, the wrong world for Flowgate.
fn main() {}
