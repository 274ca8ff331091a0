//! What only the kernel build has (feature `kernel`): the global allocator over `malloc(9)`
//! and the panic handler over `panic(9)`. A Rust panic in the kernel is a kernel panic with
//! the Rust message; it never loops and never unwinds (`panic = "abort"`).

use core::fmt::Write;
use core::panic::PanicInfo;

use crate::ffi::kernel;
use crate::output::Line;
use crate::KpiAlloc;

#[global_allocator]
static ALLOCATOR: KpiAlloc = KpiAlloc;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    let _ = write!(line, "geom_multipath: {info}");
    kernel::panic(line.as_bytes())
}
