//! TODO(arena helper): replace this stub.
