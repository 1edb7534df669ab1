//! Holding a lease: the [`Guard`] and its self-renewal.
//!
//! A guard holds an `Arc` of its holding (shared with its re-entered
//! guards and its renewal), which holds the client's engine; the validity
//! rule is the backend's, so the guard only keeps the instant it yields.

mod guard;
mod renew;

pub use guard::{Detached, Guard};
