//! Demo mode (`xo-server --demo`): simulated XCP-ng pools served in-process on loopback, registered as
//! XAPI servers so that a newcomer signs in and sees live objects at once.
