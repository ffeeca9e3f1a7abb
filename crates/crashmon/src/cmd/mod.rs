//! One module per subcommand.
pub mod demo;
pub mod monitor;
pub mod prune;
pub mod reports;
pub mod run;
pub mod symbolicate;
pub mod upload;
