//! The StoreComposer: which data store and which locker a handler uses.
//!
//! As in tusd, each plug-in offers `use_in(&mut composer)`, so that wiring a
//! server reads as a list of the parts it is made of.

use std::sync::Arc;

use crate::{DataStore, Locker};

/// Holds the data store and the locker a handler is built from.
#[derive(Clone, Default)]
pub struct StoreComposer {
    store: Option<Arc<dyn DataStore>>,
    locker: Option<Arc<dyn Locker>>,
}

impl StoreComposer {
    pub fn new() -> StoreComposer {
        StoreComposer::default()
    }

    /// Replaces the data store.
    pub fn use_store(&mut self, store: Arc<dyn DataStore>) {
        self.store = Some(store);
    }

    /// Replaces the locker.
    pub fn use_locker(&mut self, locker: Arc<dyn Locker>) {
        self.locker = Some(locker);
    }

    pub fn store(&self) -> Option<&Arc<dyn DataStore>> {
        self.store.as_ref()
    }

    pub fn locker(&self) -> Option<&Arc<dyn Locker>> {
        self.locker.as_ref()
    }
}
