//! File stores: where uploaded bodies and their metadata live.
//!
//! [`LocalFileStore`] keeps them on a local (or mounted) disk; other
//! backends (object storage) would implement the same
//! [`im_core::FileStore`] port.

mod local;

pub use local::LocalFileStore;
