//! STUB (replaced by the store branch).
#![allow(unused)]
use std::sync::Arc;
pub enum Lookup<V> {
    Hit { value: Arc<V>, stale: bool },
    VaryMiss,
    Miss,
}
pub struct StoreStats {
    pub objects: u64,
    pub bytes: u64,
    pub capacity: u64,
    pub evictions: u64,
}
#[derive(Debug)]
pub struct Store<V>(std::marker::PhantomData<V>);
pub struct FillGuard<V>(Arc<Store<V>>);
impl<V> Store<V> {
    pub fn new(capacity_bytes: u64) -> Self {
        todo!()
    }
    pub fn max_weight(&self) -> u64 {
        todo!()
    }
    pub fn get(&self, url: &str, variant: impl FnOnce(&[Box<str>]) -> String) -> Lookup<V> {
        todo!()
    }
    pub fn insert(
        &self,
        url: &str,
        vary: Arc<[Box<str>]>,
        variant: String,
        value: Arc<V>,
        weight: u64,
        tags: Vec<Box<str>>,
    ) -> bool {
        todo!()
    }
    pub fn purge_url(&self, url: &str, soft: bool) -> usize {
        todo!()
    }
    pub fn purge_prefix(&self, prefix: &str, soft: bool) -> usize {
        todo!()
    }
    pub fn purge_tags(&self, tags: &[&str], soft: bool) -> usize {
        todo!()
    }
    pub fn clear(&self) -> usize {
        todo!()
    }
    pub fn stats(&self) -> StoreStats {
        todo!()
    }
    pub fn begin_fill(self: &Arc<Self>, key: &str) -> Option<FillGuard<V>> {
        todo!()
    }
    pub fn is_filling(&self, key: &str) -> bool {
        todo!()
    }
}
