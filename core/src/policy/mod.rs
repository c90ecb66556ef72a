//! Task policies as pure state machines. TODO(policy helper).
