//! RFC 9111 rules of a shared cache (being written).
