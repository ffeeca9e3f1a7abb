//! One module per subcommand.
pub mod demo;
pub mod monitor;
pub mod reports;
pub mod symbolicate;
pub mod upload;
