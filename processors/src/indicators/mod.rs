//! Streaming technical indicators (being written).
