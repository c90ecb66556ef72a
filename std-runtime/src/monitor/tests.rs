//! Unit tests of the monitor's store: buckets, windows and rules on hand-made parts.
