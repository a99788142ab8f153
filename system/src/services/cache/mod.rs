pub mod api;
pub mod local;
pub mod peer;
pub mod store;
