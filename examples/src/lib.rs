//! Runnable examples for hacore; see `examples/README.md`.
