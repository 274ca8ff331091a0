//! Reading a value whose size the kernel only tells in advance and may change before the
//! read: libgeom's `geom_getxml` loop over `sysctl(kern.geom.confxml)`. Ask for the size,
//! add some slack, read; if the value grew past the buffer meanwhile (ENOMEM), double the
//! buffer and try again, a bounded number of times.
//!
//! The loop is pure (the two kernel calls are closures), so it is tested on every platform;
//! `freebsd::sysctl_by_name` runs it over `sysctlbyname(3)`.

use std::io;

/// Extra bytes on top of the announced size (`GEOM_GETXML_SLACK`).
pub const SLACK: usize = 4096;
/// How many reads are tried before giving up with ENOMEM (`GEOM_GETXML_RETRIES`).
pub const RETRIES: usize = 4;

/// `ENOMEM` on every platform this crate is built for.
const ENOMEM: i32 = 12;

/// Reads a value of changing size. `probe` answers the current size; `read` fills the
/// buffer it is given and answers how many bytes it wrote, or fails with ENOMEM when the
/// buffer is too small. Any other error ends the loop at once.
pub fn read_sized(
    mut probe: impl FnMut() -> io::Result<usize>,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> io::Result<Vec<u8>> {
    let mut len = probe()?.saturating_add(SLACK);
    for _ in 0..RETRIES {
        let mut buf = vec![0u8; len];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n.min(len));
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(ENOMEM) => len = len.saturating_mul(2),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(ENOMEM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A value that is `sizes[0]` bytes long when probed and `sizes[i]` at the i-th read
    /// (the last size sticks).
    struct Growing {
        sizes: Vec<usize>,
        reads: Cell<usize>,
    }

    impl Growing {
        fn new(sizes: &[usize]) -> Growing {
            Growing {
                sizes: sizes.to_vec(),
                reads: Cell::new(0),
            }
        }
        fn probe(&self) -> io::Result<usize> {
            Ok(self.sizes[0])
        }
        fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
            let i = self.reads.get();
            self.reads.set(i + 1);
            let size = self.sizes[(i + 1).min(self.sizes.len() - 1)];
            if buf.len() < size {
                return Err(io::Error::from_raw_os_error(ENOMEM));
            }
            buf[..size].fill(b'x');
            Ok(size)
        }
        fn run(&self) -> io::Result<Vec<u8>> {
            read_sized(|| self.probe(), |b| self.read(b))
        }
    }

    #[test]
    fn a_stable_value_is_read_once_with_slack() {
        let g = Growing::new(&[100]);
        let v = g.run().unwrap();
        assert_eq!(v, vec![b'x'; 100]);
        assert_eq!(g.reads.get(), 1);
    }

    #[test]
    fn growth_beyond_the_slack_doubles_the_buffer() {
        // 100 + 4096 is too small for 5000; doubled (8392) is enough.
        let g = Growing::new(&[100, 5000]);
        let v = g.run().unwrap();
        assert_eq!(v.len(), 5000);
        assert_eq!(g.reads.get(), 2);
    }

    #[test]
    fn endless_growth_gives_up_with_enomem() {
        let g = Growing::new(&[0, 1 << 30]);
        let e = g.run().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOMEM));
        assert_eq!(g.reads.get(), RETRIES);
    }

    #[test]
    fn other_errors_end_at_once() {
        let mut calls = 0;
        let e = read_sized(
            || Ok(10),
            |_| {
                calls += 1;
                Err(io::Error::from_raw_os_error(2))
            },
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(2));
        assert_eq!(calls, 1);
        let e = read_sized(|| Err(io::Error::from_raw_os_error(1)), |_| Ok(0)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(1));
    }
}
