//! One module per command.

pub mod bench;
pub mod demo;
pub mod inspect;
pub mod run;
pub mod tokens;
