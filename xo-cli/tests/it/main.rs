//! All integration tests of xo-cli in one binary (one link of the dev-dependency tree).

mod e2e;
mod pty;
mod support;
mod transfer;
mod watch;
