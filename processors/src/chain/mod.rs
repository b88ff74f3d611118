//! Option-chain analytics (being written).
