//! TODO(mpmc helper): replace this stub.
