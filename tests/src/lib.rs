//! Test harness shared by the end-to-end suites.
