//! TODO(spsc helper): replace this stub.
