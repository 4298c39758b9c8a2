//! xapi-sim integration tests, one test binary (one link on CI): the binary's contract (`binary`), HTTP(S) end to
//! end (`sim`), the explicit operations through the dispatcher (`ops`), `/console` RFB tunnels (`console`) and HTTP
//! transfers (`transfer`).

mod binary;
mod console;
mod ops;
mod pool_eject;
mod sim;
mod transfer;
