//! A stored response: its head as the upstream sent it (parsed in place, like any response
//! head), its whole body, and the freshness facts computed when it was stored.

use bytes::Bytes;

use super::policy::Freshness;
use crate::http1::{HeaderSpan, ResponseHead};

/// Bytes an entry costs beyond its head and body (the key, the record, the queues).
const OVERHEAD_BYTES: u64 = 256;

#[derive(Debug)]
pub struct Object {
    /// The response head, status line through the blank line.
    pub raw: Bytes,
    pub head: ResponseHead,
    pub body: Bytes,
    pub freshness: Freshness,
}

impl Object {
    /// The head's fields, as the policy functions take them.
    pub fn fields(&self) -> (&[u8], &[HeaderSpan]) {
        (&self.raw, &self.head.headers)
    }

    /// What the object costs the store's memory bound under a key of `key_len` bytes.
    pub fn weight(&self, key_len: usize) -> u64 {
        (self.raw.len() + self.body.len() + key_len) as u64 + OVERHEAD_BYTES
    }
}
