//! All integration tests of xo-lib in one binary (one link of the dev-dependency tree).

mod cache;
mod client;
mod examples;
mod protocol;
mod support;
mod transfer;
