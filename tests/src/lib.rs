//! Integration tests of flujo-rs's public API live in `tests/tests/`; this library is empty.
