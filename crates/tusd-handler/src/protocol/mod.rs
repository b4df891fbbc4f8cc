//! The tus protocol, one module per extension, as the spec splits it.
//!
//! - [`core`] — OPTIONS, HEAD and PATCH.
//! - [`receive`] — the body-receiving path PATCH and creation-with-upload
//!   share.
//! - [`creation`] — POST, with creation-with-upload and creation-defer-length.
//! - [`termination`] — DELETE.
//! - [`concatenation`] — partial and final uploads, including finals created
//!   before their partials finished.
//! - [`checksum`] — digests of PATCH bodies.
//! - [`expiration`] — `Upload-Expires`, 410 and the sweeper.
//! - [`download`] — GET with Range (not a tus extension, but tusd's).

pub mod checksum;
pub mod concatenation;
pub mod core;
pub mod creation;
pub mod download;
pub mod expiration;
pub mod receive;
pub mod termination;
