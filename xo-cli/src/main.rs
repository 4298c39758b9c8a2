//! xo-cli: the introspecting command-line client of xo-server.
fn main() {}
