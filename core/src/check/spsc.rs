//! TODO(spsc helper): the spsc program.

/// Runs `data` as an operation program against the structure and its model.
pub fn run(data: &[u8]) {
    let _ = data;
}
