//! The aligned I/O buffer every data request travels in: O_DIRECT wants the bytes on a
//! sector boundary, and io_uring (`uring`) needs storage that stays put while the kernel
//! uses it. One heap block allocated on an [`ALIGN`] boundary gives both.
//!
//! Blocks are recycled. A block's size is the request's rounded up to a power of two (at
//! least [`ALIGN`]); a dropped buffer's block goes back to a free list of its size, up to
//! [`POOL_BYTES`] in all, and the next buffer of that size takes it. Without this every
//! 1 MiB request mapped a fresh block from the kernel (the allocator maps blocks that
//! large), faulted its 256 pages in, zeroed them and unmapped them again; and every read's
//! buffer was zeroed only to be overwritten. A recycled block is initialised memory (it
//! held an earlier request's bytes), so a buffer that is about to be overwritten entirely
//! ([`IoBuf::to_fill`]: a read's, or one filled from a socket) takes it as it is; only a
//! fresh block is zeroed. A write's buffer is filled by the copy of its data alone.
//!
//! The stale bytes of a recycled block never reach a client: a read is delivered only once
//! the device has filled every byte of it (a short read is continued or fails).

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

/// The alignment of every data buffer (the largest logical sector size in use).
pub const ALIGN: usize = 4096;

/// The most bytes the free lists keep, over every size.
pub const POOL_BYTES: usize = 64 << 20;

/// Blocks larger than this are never kept (more than any request a front end sends).
const LARGEST_POOLED: usize = 8 << 20;

/// An I/O buffer whose bytes start on an [`ALIGN`] boundary.
pub struct IoBuf {
    /// `layout(block_size(len))` bytes from the global allocator, every one of them
    /// initialised.
    ptr: NonNull<u8>,
    len: usize,
}

/// A block on a free list.
struct FreeBlock(NonNull<u8>);

// SAFETY: a free block is owned by the free list alone (no IoBuf points at it), as a
// Vec<u8>'s storage is owned by the Vec; it moves between threads only under the lock.
unsafe impl Send for FreeBlock {}

/// The free lists: one per power-of-two block size, from ALIGN (index 0) to
/// LARGEST_POOLED, and the bytes they hold in all.
struct Pool {
    lists: [Vec<FreeBlock>; POOL_CLASSES],
    bytes: usize,
}

/// Block sizes kept: ALIGN << 0 ..= LARGEST_POOLED.
const POOL_CLASSES: usize = (LARGEST_POOLED / ALIGN).trailing_zeros() as usize + 1;

static POOL: Mutex<Pool> = Mutex::new(Pool {
    lists: [const { Vec::new() }; POOL_CLASSES],
    bytes: 0,
});

/// The size of the block behind a buffer of `len` bytes.
fn block_size(len: usize) -> usize {
    len.max(ALIGN).next_power_of_two()
}

/// The free list a block of `size` bytes belongs to, if such blocks are kept.
fn class_of(size: usize) -> Option<usize> {
    (size <= LARGEST_POOLED).then(|| (size / ALIGN).trailing_zeros() as usize)
}

/// A recycled block of `size` bytes, if one is free.
fn take_free(size: usize) -> Option<NonNull<u8>> {
    let class = class_of(size)?;
    let mut pool = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let block = pool.lists[class].pop()?;
    pool.bytes -= size;
    Some(block.0)
}

/// Keeps a block of `size` bytes for later; `false` if the free lists are full.
fn give_back(ptr: NonNull<u8>, size: usize) -> bool {
    let Some(class) = class_of(size) else {
        return false;
    };
    let mut pool = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pool.bytes + size > POOL_BYTES {
        return false;
    }
    pool.bytes += size;
    pool.lists[class].push(FreeBlock(ptr));
    true
}

// SAFETY: an IoBuf owns its heap block outright, as a Vec<u8> does; nothing else points
// into it, so moving it to or sharing it with another thread is as safe as for Vec<u8>.
unsafe impl Send for IoBuf {}
// SAFETY: as above; `&IoBuf` only reads.
unsafe impl Sync for IoBuf {}

/// The layout of a block of `size` bytes (a power of two, at least ALIGN: never empty).
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("an I/O buffer's size fits a Layout")
}

impl IoBuf {
    /// A buffer of `len` bytes: a recycled block (initialised, with stale bytes) if one is
    /// free, else a fresh one, zeroed; and whether it is the fresh one.
    fn allocate(len: usize) -> (IoBuf, bool) {
        let size = block_size(len);
        if let Some(ptr) = take_free(size) {
            return (IoBuf { ptr, len }, false);
        }
        let layout = layout(size);
        // SAFETY: `layout` has a non-zero size (see `layout`).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        (IoBuf { ptr, len }, true)
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> IoBuf {
        let (mut buf, fresh) = IoBuf::allocate(len);
        if !fresh {
            buf.as_mut_slice().fill(0);
        }
        buf
    }

    /// `len` bytes that the caller overwrites entirely before anyone reads them (a read's
    /// buffer, filled by the device; a write's, filled from a socket): what they hold
    /// until then is unspecified (a recycled block's earlier bytes, or zeros).
    pub fn to_fill(len: usize) -> IoBuf {
        IoBuf::allocate(len).0
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> IoBuf {
        let (mut buf, _) = IoBuf::allocate(bytes.len());
        buf.as_mut_slice().copy_from_slice(bytes);
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
        let size = block_size(self.len);
        if give_back(self.ptr, size) {
            return;
        }
        // SAFETY: `ptr` came from the global allocator with `layout(block_size(len))`
        // (fresh, or recycled from a block of that size), `len` never changes, and the
        // block was not given to the free lists.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout(size)) }
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
    fn blocks_are_recycled_and_zeroed_means_zero() {
        let mut a = IoBuf::to_fill(1 << 20);
        a.as_mut_slice().fill(0x5a);
        drop(a);
        // The same block, most likely (another test's thread may take it first).
        let b = IoBuf::zeroed((1 << 20) - 512);
        assert!(
            b.as_slice().iter().all(|&x| x == 0),
            "recycled and zeroed again"
        );
        assert_eq!(b.len(), (1 << 20) - 512);
        drop(b);
        let c = IoBuf::from_slice(&[3u8; 3000]);
        assert_eq!(c.as_slice(), &[3u8; 3000][..]);
        let d = IoBuf::to_fill(20 << 20);
        assert_eq!(
            d.len(),
            20 << 20,
            "larger than any free list: allocated and freed"
        );
    }

    #[test]
    fn the_free_lists_stay_within_their_bound() {
        let many: Vec<IoBuf> = (0..100).map(|_| IoBuf::to_fill(1 << 20)).collect();
        drop(many);
        let held = POOL.lock().unwrap().bytes;
        assert!(held <= POOL_BYTES, "{held} bytes held");
    }

    #[test]
    fn buffers_cross_threads() {
        let b = IoBuf::from_slice(b"sector");
        let back = std::thread::spawn(move || b).join().unwrap();
        assert_eq!(back.as_slice(), b"sector");
    }
}
