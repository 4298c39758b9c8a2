//! Explicit XAPI messages (VM lifecycle, storage, network, hosts, messages…), registered into the dispatcher.

use crate::rpc::Registry;

/// Register every explicit message implemented by the simulator.
pub fn register(reg: &mut Registry) {
    let _ = reg;
}
