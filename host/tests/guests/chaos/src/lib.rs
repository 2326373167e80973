//! `chaos`: misbehaves on purpose, per its config, so tests can prove the host survives it.
//!
//! Config: `init` = `fail` | `trap` | `loop`; `trap_on_port`, `loop_on_port`, `alloc_on_port`, `error_on_port`
//! (act on flows with that destination port); `trap_packets_in_multiple_of` (trap on flows whose `packets_in` is a
//! multiple: 100 picks about 1% of the simulator's flows); `read_file` (a host path to try reading at init); `connect`
//! (an address to try connecting to at init). Every other flow is annotated `chaos=ok`.

use flowgate_guest::{Annotations, Config, Flow, Level, Outcome, Transform, counter_add, log};

pub struct Chaos {
    trap_on: Option<i64>,
    loop_on: Option<i64>,
    alloc_on: Option<i64>,
    error_on: Option<i64>,
    trap_multiple: Option<i64>,
    /// Kept so each allocation is observable and not optimised away.
    hoard: Vec<Vec<u8>>,
}

fn port(c: &Config, key: &str) -> Result<Option<i64>, String> {
    c.get(key).map(|v| v.parse().map_err(|_| format!("{key}: {v:?}"))).transpose()
}

impl Transform for Chaos {
    fn init(c: &Config) -> Result<Self, String> {
        match c.get("init") {
            Some("fail") => return Err("chaos refuses this configuration".into()),
            Some("trap") => panic!("chaos traps in init"),
            Some("loop") => loop {
                std::hint::black_box(0);
            },
            _ => {}
        }
        if let Some(path) = c.get("read_file") {
            match std::fs::read(path) {
                Ok(bytes) => {
                    counter_add("sandbox_breach", 1);
                    log(Level::Error, &format!("SANDBOX BREACH: read {} bytes from {path}", bytes.len()));
                }
                Err(e) => {
                    counter_add("sandbox_refused", 1);
                    log(Level::Info, &format!("read {path} refused: {e}"));
                }
            }
        }
        if let Some(addr) = c.get("connect") {
            match std::net::TcpStream::connect(addr) {
                Ok(_) => {
                    counter_add("sandbox_breach", 1);
                    log(Level::Error, &format!("SANDBOX BREACH: connected to {addr}"));
                }
                Err(e) => {
                    counter_add("sandbox_refused", 1);
                    log(Level::Info, &format!("connect {addr} refused: {e}"));
                }
            }
        }
        if std::env::vars().next().is_some() {
            counter_add("sandbox_breach", 1);
            log(Level::Error, "SANDBOX BREACH: environment variables visible");
        }
        Ok(Chaos {
            trap_on: port(c, "trap_on_port")?,
            loop_on: port(c, "loop_on_port")?,
            alloc_on: port(c, "alloc_on_port")?,
            error_on: port(c, "error_on_port")?,
            trap_multiple: port(c, "trap_packets_in_multiple_of")?.filter(|&m| m > 0),
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, flow: &mut Flow<'_>) -> Outcome {
        let (port, packets_in) = (flow.dest_port(), flow.packets_in());
        let p = Some(port);
        if self.trap_multiple.is_some_and(|m| packets_in % m == 0) {
            panic!("chaos traps on packets_in {packets_in}");
        }
        if p == self.trap_on {
            panic!("chaos traps on port {}", port);
        }
        if p == self.loop_on {
            loop {
                std::hint::black_box(0);
            }
        }
        if p == self.alloc_on {
            // 4 GiB in 64 MiB steps: the memory cap stops it long before.
            for _ in 0..64 {
                self.hoard.push(vec![1u8; 64 << 20]);
            }
        }
        if p == self.error_on {
            return Outcome::Error(format!("chaos cannot handle port {}", port));
        }
        println!("chaos saw {}", port);
        Outcome::Annotate(Annotations::none().attr("chaos", "ok"))
    }
}

flowgate_guest::export!(Chaos);
