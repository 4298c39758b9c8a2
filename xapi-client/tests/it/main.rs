//! xapi-client integration tests, one test binary: scripted wire exchanges (`wire`, with the scripted server in
//! `support`), the client against the in-process simulator (`sim`) and no secrets in its logs (`secrets`).

mod proxy;
mod secrets;
mod sim;
mod support;
mod wire;
