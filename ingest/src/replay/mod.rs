//! Recorded tick replay (being written).
