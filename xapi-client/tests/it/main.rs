//! xapi-client integration tests, one test binary: scripted wire exchanges (`wire`, with the scripted server in
//! `support`) and the client against the in-process simulator (`sim`).

mod sim;
mod support;
mod wire;
