//! Critical-path shares of sampled runs (filled in by the bottleneck work).
