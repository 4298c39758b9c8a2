//! Workspace automation (`cargo xtask …`); the code generator lives in [`codegen`] so tests can run it in memory.

pub mod codegen;
