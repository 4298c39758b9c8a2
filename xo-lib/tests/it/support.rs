//! Test harness: the shared in-process xo-server ([`test_server`], also used by xo-cli's tests) and what only
//! xo-lib's tests do with it (publish fixture objects, drop connections).

#![allow(dead_code)]

use serde_json::{Map, Value};

#[path = "test_server.rs"]
mod test_server;
pub use test_server::*;
#[path = "transfer_server.rs"]
mod transfer_server;
pub use transfer_server::http_server;

impl TestServer {
    /// Stores objects in the fixture and publishes them as an `enter` notification.
    pub fn enter(&self, objs: &[Value]) {
        let mut m = Map::new();
        for o in objs {
            m.insert(o["id"].as_str().unwrap().to_owned(), o.clone());
        }
        self.objects.lock().unwrap().extend(m.clone());
        self.server.app().publish(m, vec![]);
    }

    /// Removes objects from the fixture and publishes an `exit` notification.
    pub fn exit(&self, ids: &[&str]) {
        let mut all = self.objects.lock().unwrap();
        for id in ids {
            all.remove(*id);
        }
        drop(all);
        self.server
            .app()
            .publish(Map::new(), ids.iter().map(|s| s.to_string()).collect());
    }

    /// Closes every API connection from the server side.
    pub fn drop_connections(&self) {
        for c in self.server.app().connections() {
            c.close(1001, "test");
        }
    }
}
