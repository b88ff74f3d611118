//! Option pricing: implied volatility and Greeks (being written).
