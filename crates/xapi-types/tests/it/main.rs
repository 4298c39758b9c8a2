//! xapi-types integration tests, one test binary: the generated tables (`generated`) and decoder robustness
//! (`robustness`).

mod generated;
mod robustness;
