//! XO tasks: an in-memory task log ([`TaskLog`], reachable as [`crate::App::tasks`]) of root tasks with
//! sub-tasks, progress, infos/warnings and abort, shaped like XO's consolidated task logs (`@vates/task` +
//! `xo-mixins/tasks`); every JSON-RPC call runs inside an `API call: <method>` task ([`api_call`]), and the REST
//! API serves the log under `/rest/v0/tasks` ([`crate::rest`]).

mod abort;
pub mod api_call;
mod handle;
mod log;
mod node;

pub use abort::AbortSignal;
pub use handle::Task;
pub use log::{CreateOptions, TaskError, TaskLog, TaskWatch, DEFAULT_KEEP};
pub use node::Status;
