//! Explicit XAPI messages (VM lifecycle, storage, network, hosts, messages…), registered into the dispatcher.
//!
//! Every handler runs its whole effect inside one [`crate::PoolState::write`] closure, through the [`crate::Db`]
//! API (so events carry both ends of ref changes), and recomputes `allowed_operations` of what it touched.
//! Pool builders should call [`allowed::refresh_all`] and [`placement::update_host_memory`] after seeding.

pub mod allowed;
pub mod bond;
pub mod device;
pub mod helpers;
pub mod host;
pub mod message;
pub mod network;
pub mod pif;
pub mod placement;
pub mod pool;
pub mod pool_eject;
pub mod pool_update;
pub mod sr;
pub mod sr_lifecycle;
pub mod vbd;
pub mod vdi;
pub mod vif;
pub mod vm;
pub mod vm_clone;
pub mod vm_config;
pub mod vm_migrate;
pub mod vm_ops_check;
pub mod vm_provision;

use crate::rpc::Registry;

/// Register every explicit message implemented by the simulator.
pub fn register(reg: &mut Registry) {
    vdi::register(reg);
    vbd::register(reg);
    vif::register(reg);
    network::register(reg);
    pif::register(reg);
    bond::register(reg);
    vm::register(reg);
    vm_clone::register(reg);
    vm_config::register(reg);
    vm_provision::register(reg);
    vm_migrate::register(reg);
    host::register(reg);
    sr::register(reg);
    sr_lifecycle::register(reg);
    message::register(reg);
    pool::register(reg);
    pool_eject::register(reg);
    pool_update::register(reg);
}
