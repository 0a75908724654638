//! The bounded store behind a named cache (being written).
