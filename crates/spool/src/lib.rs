//! Durable on-disk queue with per-consumer cursors and group commit.
