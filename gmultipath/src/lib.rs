//! gmultipath(8) and gnop(8) (being written).
#![forbid(unsafe_code)]

pub mod humanize;
pub mod mesh;
pub mod render;
