//! Unit tests of one replica's rules, driven by hand-made messages.
