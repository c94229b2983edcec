//! Keel's decision code (pure: no I/O, no clock).
