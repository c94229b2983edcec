//! Trace loaders: turn workload files on disk into `keel_model::WorkloadTrace`.
