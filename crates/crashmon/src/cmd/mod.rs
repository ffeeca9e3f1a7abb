//! One module per subcommand.
pub mod config;
pub mod demo;
pub mod doctor;
pub mod dump_syms;
pub mod monitor;
pub mod prune;
pub mod reports;
pub mod run;
pub mod symbolicate;
pub mod upload;
