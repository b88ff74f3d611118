//! Kite-compatible ticker adapter (being written).
