//! A device in memory that can be told to fail: what tests put behind a path, a NOP or an
//! export instead of a block device.

use std::sync::Mutex;

use geom_multipath::Errno;

use crate::path::device::Device;

/// Faults a [`MemDevice`] can be told to produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemFaults {
    /// Every read fails with this error.
    pub read: Option<Errno>,
    /// Every write fails with this error.
    pub write: Option<Errno>,
}

/// A device in memory, for tests: shared by every path that is "a path to" it.
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
    faults: Mutex<MemFaults>,
}

impl MemDevice {
    /// `size` zero bytes.
    pub fn new(size: usize) -> MemDevice {
        MemDevice {
            data: Mutex::new(vec![0; size]),
            faults: Mutex::new(MemFaults::default()),
        }
    }

    /// Sets the faults every later request sees.
    pub fn set_faults(&self, faults: MemFaults) {
        *self.faults.lock().expect("faults lock") = faults;
    }

    /// A copy of `len` bytes at `offset`, bypassing faults.
    pub fn peek(&self, offset: usize, len: usize) -> Vec<u8> {
        self.data.lock().expect("data lock")[offset..offset + len].to_vec()
    }
}

impl Device for MemDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        if let Some(e) = self.faults.lock().expect("faults lock").read {
            return Err(e);
        }
        let data = self.data.lock().expect("data lock");
        let start = usize::try_from(offset).map_err(|_| Errno::EIO)?;
        let src = data.get(start..start + buf.len()).ok_or(Errno::EIO)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno> {
        if let Some(e) = self.faults.lock().expect("faults lock").write {
            return Err(e);
        }
        let mut data = self.data.lock().expect("data lock");
        let start = usize::try_from(offset).map_err(|_| Errno::ENOSPC)?;
        let dst = data
            .get_mut(start..start + buf.len())
            .ok_or(Errno::ENOSPC)?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        let mut data = self.data.lock().expect("data lock");
        let start = usize::try_from(offset).map_err(|_| Errno::EIO)?;
        let end = start + usize::try_from(len).map_err(|_| Errno::EIO)?;
        data.get_mut(start..end).ok_or(Errno::EIO)?.fill(0);
        Ok(())
    }

    fn physpath(&self) -> Result<String, Errno> {
        Ok(String::from("mem"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_device_reads_back_writes_and_injects_faults() {
        let d = MemDevice::new(8192);
        d.write_at(&[7; 512], 4096).unwrap();
        let mut buf = [0u8; 512];
        d.read_at(&mut buf, 4096).unwrap();
        assert_eq!(buf, [7; 512]);
        assert_eq!(d.read_at(&mut buf, 8000), Err(Errno::EIO), "past the end");
        d.set_faults(MemFaults {
            read: Some(Errno::ENXIO),
            write: None,
        });
        assert_eq!(d.read_at(&mut buf, 0), Err(Errno::ENXIO));
        d.discard(4096, 512).unwrap();
        assert_eq!(d.peek(4096, 4), [0, 0, 0, 0]);
    }
}
