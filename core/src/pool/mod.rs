//! TODO(pool helper): replace this stub.
