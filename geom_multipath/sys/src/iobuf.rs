//! The aligned I/O buffer every data request travels in: O_DIRECT wants the bytes on a
//! sector boundary, and io_uring (`uring`) needs storage that stays put while the kernel
//! uses it. One heap block of exactly the request's size, allocated on an [`ALIGN`]
//! boundary, gives both; a write's buffer is filled by the copy of its data alone (no
//! zeroing first), a read's is zeroed once.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// The alignment of every data buffer (the largest logical sector size in use).
pub const ALIGN: usize = 4096;

/// An I/O buffer whose bytes start on an [`ALIGN`] boundary.
pub struct IoBuf {
    /// `layout(len)` bytes from the global allocator, every one of them initialised.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an IoBuf owns its heap block outright, as a Vec<u8> does; nothing else points
// into it, so moving it to or sharing it with another thread is as safe as for Vec<u8>.
unsafe impl Send for IoBuf {}
// SAFETY: as above; `&IoBuf` only reads.
unsafe impl Sync for IoBuf {}

/// The block behind a buffer of `len` bytes (at least one byte: the allocator takes no
/// empty blocks).
fn layout(len: usize) -> Layout {
    Layout::from_size_align(len.max(1), ALIGN).expect("an I/O buffer's size fits a Layout")
}

impl IoBuf {
    /// A block for `len` bytes, zeroed or not.
    fn allocate(len: usize, zeroed: bool) -> IoBuf {
        let layout = layout(len);
        // SAFETY: `layout` has a non-zero size (see `layout`).
        let raw = unsafe {
            if zeroed {
                alloc::alloc_zeroed(layout)
            } else {
                alloc::alloc(layout)
            }
        };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        IoBuf { ptr, len }
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> IoBuf {
        IoBuf::allocate(len, true)
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> IoBuf {
        let buf = IoBuf::allocate(bytes.len(), false);
        // SAFETY: the block is fresh, `bytes.len()` long at least and not aliased by
        // `bytes`; after the copy every byte of it is initialised.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.ptr.as_ptr(), bytes.len()) };
        buf
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `len` initialised bytes that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the global allocator with `layout(self.len)`, and `len`
        // never changes.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout(self.len)) }
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buffer_starts_on_the_alignment() {
        for len in [0, 1, 512, 4095, 4096, 4097, 65536, 1 << 20] {
            let z = IoBuf::zeroed(len);
            let c = IoBuf::from_slice(&vec![7u8; len]);
            for b in [&z, &c] {
                assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0, "{len} bytes");
                assert_eq!(b.len(), len);
                assert_eq!(b.is_empty(), len == 0);
            }
        }
    }

    #[test]
    fn zeroed_is_zero_and_a_copy_is_the_bytes() {
        assert!(IoBuf::zeroed(8192).as_slice().iter().all(|&b| b == 0));
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut c = IoBuf::from_slice(&bytes);
        assert_eq!(c.as_slice(), &bytes[..]);
        c.as_mut_slice()[4999] = 0xaa;
        assert_eq!(c.as_slice()[4999], 0xaa);
    }

    #[test]
    fn buffers_cross_threads() {
        let b = IoBuf::from_slice(b"sector");
        let back = std::thread::spawn(move || b).join().unwrap();
        assert_eq!(back.as_slice(), b"sector");
    }
}
