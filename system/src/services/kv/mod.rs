mod state;

pub use state::*;
