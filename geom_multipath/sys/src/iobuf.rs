//! The aligned I/O buffer every data request travels in: O_DIRECT wants the bytes on a
//! sector boundary, and io_uring (`uring`) needs storage that stays put while the kernel
//! uses it; a heap block carved from an over-sized `Vec` gives both without `unsafe`.

/// The alignment of every data buffer (the largest logical sector size in use).
pub const ALIGN: usize = 4096;

/// An I/O buffer whose bytes start on an [`ALIGN`] boundary, carved from an over-sized
/// `Vec` so that no `unsafe` allocation is needed.
pub struct IoBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl IoBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> IoBuf {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        IoBuf {
            storage,
            start,
            len,
        }
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> IoBuf {
        let mut b = IoBuf::zeroed(bytes.len());
        b.as_mut_slice().copy_from_slice(bytes);
        b
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
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

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoBuf({} bytes)", self.len)
    }
}
