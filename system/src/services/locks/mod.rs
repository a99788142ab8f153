pub mod api;
mod state;

pub use state::*;
