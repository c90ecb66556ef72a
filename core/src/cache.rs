//! Cache keys and a fixed-capacity result cache. TODO(cache helper).
