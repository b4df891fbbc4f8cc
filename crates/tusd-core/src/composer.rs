//! The StoreComposer: which data store, which of its optional capabilities
//! and which locker a handler uses.
//!
//! As in tusd, each plug-in offers `use_in(&mut composer)`, so that wiring a
//! server reads as a list of the parts it is made of, and a store registers
//! each capability it has with its own call. Keeping the capabilities as
//! separate slots (rather than asking the core store at run time) lets an
//! embedder turn one off, or take one from a different store, without
//! touching either store.

use std::sync::Arc;

use crate::{
    ChunkStager, Concater, DataStore, LengthDeferrer, Lister, Locker, Terminater, Truncater,
};

/// Holds the parts a handler is built from. Cheap to clone.
#[derive(Clone, Default)]
pub struct StoreComposer {
    core: Option<Arc<dyn DataStore>>,
    terminater: Option<Arc<dyn Terminater>>,
    concater: Option<Arc<dyn Concater>>,
    length_deferrer: Option<Arc<dyn LengthDeferrer>>,
    truncater: Option<Arc<dyn Truncater>>,
    chunk_stager: Option<Arc<dyn ChunkStager>>,
    lister: Option<Arc<dyn Lister>>,
    locker: Option<Arc<dyn Locker>>,
}

/// Which optional capabilities a composer has, for deciding what a handler
/// advertises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub termination: bool,
    pub concatenation: bool,
    pub defer_length: bool,
    pub checksum: bool,
    pub listing: bool,
}

impl StoreComposer {
    pub fn new() -> StoreComposer {
        StoreComposer::default()
    }

    /// Sets the store every handler needs.
    pub fn use_core(&mut self, store: Arc<dyn DataStore>) {
        self.core = Some(store);
    }

    pub fn use_terminater(&mut self, store: Arc<dyn Terminater>) {
        self.terminater = Some(store);
    }

    pub fn use_concater(&mut self, store: Arc<dyn Concater>) {
        self.concater = Some(store);
    }

    pub fn use_length_deferrer(&mut self, store: Arc<dyn LengthDeferrer>) {
        self.length_deferrer = Some(store);
    }

    pub fn use_truncater(&mut self, store: Arc<dyn Truncater>) {
        self.truncater = Some(store);
    }

    /// Checksums by staging (see [`ChunkStager`]); when a composer has both
    /// this and a truncater, the handler stages.
    pub fn use_chunk_stager(&mut self, store: Arc<dyn ChunkStager>) {
        self.chunk_stager = Some(store);
    }

    pub fn use_lister(&mut self, store: Arc<dyn Lister>) {
        self.lister = Some(store);
    }

    /// Sets the locker.
    pub fn use_locker(&mut self, locker: Arc<dyn Locker>) {
        self.locker = Some(locker);
    }

    pub fn core(&self) -> Option<&Arc<dyn DataStore>> {
        self.core.as_ref()
    }

    pub fn terminater(&self) -> Option<&Arc<dyn Terminater>> {
        self.terminater.as_ref()
    }

    pub fn concater(&self) -> Option<&Arc<dyn Concater>> {
        self.concater.as_ref()
    }

    pub fn length_deferrer(&self) -> Option<&Arc<dyn LengthDeferrer>> {
        self.length_deferrer.as_ref()
    }

    pub fn truncater(&self) -> Option<&Arc<dyn Truncater>> {
        self.truncater.as_ref()
    }

    pub fn chunk_stager(&self) -> Option<&Arc<dyn ChunkStager>> {
        self.chunk_stager.as_ref()
    }

    pub fn lister(&self) -> Option<&Arc<dyn Lister>> {
        self.lister.as_ref()
    }

    pub fn locker(&self) -> Option<&Arc<dyn Locker>> {
        self.locker.as_ref()
    }

    /// The optional capabilities registered so far.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            termination: self.terminater.is_some(),
            concatenation: self.concater.is_some(),
            defer_length: self.length_deferrer.is_some(),
            checksum: self.truncater.is_some() || self.chunk_stager.is_some(),
            listing: self.lister.is_some(),
        }
    }
}
