//! Shared by the targets: the invariants of the property tests (one source
//! for both runners) and an allocator that records the largest single
//! allocation, to check that no declared length is trusted for an
//! allocation.

#![allow(dead_code)] // each target uses a subset

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "../../../crates/im-protocol/tests/it/invariants.rs"]
pub mod invariants;

/// `System`, recording the largest allocation (or reallocation) size.
pub struct Recording;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and panics if it made a single allocation above `limit` bytes.
pub fn allocating_at_most<R>(limit: usize, f: impl FnOnce() -> R) -> R {
    LARGEST.store(0, Ordering::Relaxed);
    let r = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= limit,
        "allocated {largest} bytes at once (limit {limit})"
    );
    r
}

/// What a protobuf decoder may need for `input_len` bytes: copies of the
/// input, and vectors of at most one element per two input bytes (an empty
/// repeated message is a tag and a zero length), an element of the model
/// or of the generated types (`MessageInfo`, `StoredMessage`) being less
/// than 512 bytes, with `Vec`'s doubling; plus small constant-size things
/// (error messages). A decoder that trusted a declared length or count
/// would exceed it.
pub fn proto_limit(input_len: usize) -> usize {
    512 * input_len + 4096
}
