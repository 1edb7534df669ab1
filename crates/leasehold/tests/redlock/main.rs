//! Redlock over independent masters: quorums, frozen, killed and
//! restarted masters, clock jumps, fences that never go back, what is
//! refused, and a peer Redlock client on the same masters.

mod common;

mod clocks;
mod connect;
mod fences;
mod handover;
mod interop;
mod kleppmann;
mod quorum;
mod refusals;
mod semaphore;
mod wakeup;
