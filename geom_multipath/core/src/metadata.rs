//! The on-disk label: FreeBSD's `struct g_multipath_metadata`, version 1, in the last sector
//! of every path (COMPAT.md §1).
//!
//! The codec is pure: [`Metadata::encode_into`] fills a sector, [`decode`] reads one. The
//! encoding is packed field by field, little-endian, 89 bytes, the rest of the sector zero:
//!
//! | off | len | field          | encoding                                   |
//! |----:|----:|----------------|--------------------------------------------|
//! |   0 |  16 | md_magic       | `GEOM::MULTIPATH\0`                        |
//! |  16 |  40 | md_uuid        | ASCII UUID, NUL-terminated, zero-padded    |
//! |  56 |  16 | md_name        | ASCII name, NUL-terminated, ≤ 15 bytes     |
//! |  72 |   4 | md_version     | u32 LE, 1                                  |
//! |  76 |   4 | md_sectorsize  | u32 LE (0: do not check)                   |
//! |  80 |   8 | md_size        | u64 LE, whole path size (0: do not check)  |
//! |  88 |   1 | md_active_active | 0 A/P, 1 A/A, 2 A/R                      |
//!
//! Where FreeBSD silently truncates a name of 16 bytes or more, this codec refuses it
//! ([`NameError::TooLong`]); that deviation is listed in gmultipath(8) COMPATIBILITY.
//! Decoding checks the magic first and the version second, in the order the kernel's taste
//! does, so that the caller can print FreeBSD's messages for those two cases.

use alloc::string::String;
use alloc::vec::Vec;
use byteorder::{ByteOrder, LittleEndian};
use core::fmt;

use crate::state::Mode;

/// `G_MULTIPATH_MAGIC` with its NUL: exactly the 16 bytes of `md_magic`.
pub const MAGIC: &[u8; 16] = b"GEOM::MULTIPATH\0";
/// `G_MULTIPATH_VERSION`.
pub const VERSION: u32 = 1;
/// The class name, `G_MULTIPATH_CLASS_NAME`.
pub const CLASS_NAME: &str = "MULTIPATH";

/// Byte offset of `md_magic`.
pub const OFF_MAGIC: usize = 0;
/// Byte offset of `md_uuid`.
pub const OFF_UUID: usize = 16;
/// Byte offset of `md_name`.
pub const OFF_NAME: usize = 56;
/// Byte offset of `md_version`.
pub const OFF_VERSION: usize = 72;
/// Byte offset of `md_sectorsize`.
pub const OFF_SECTORSIZE: usize = 76;
/// Byte offset of `md_size`.
pub const OFF_SIZE: usize = 80;
/// Byte offset of `md_active_active`.
pub const OFF_MODE: usize = 88;
/// Length of the encoded metadata; the rest of the sector is zero.
pub const ENCODED_LEN: usize = 89;

/// Size of `md_uuid`, NUL included.
pub const UUID_FIELD_LEN: usize = 40;
/// Size of `md_name`, NUL included.
pub const NAME_FIELD_LEN: usize = 16;
/// The longest geom name that fits `md_name` (and `sc_name`).
pub const NAME_MAX: usize = NAME_FIELD_LEN - 1;
/// Length of a UUID in its canonical text form.
pub const UUID_TEXT_LEN: usize = 36;

/// Why a geom name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The empty string.
    Empty,
    /// Longer than [`NAME_MAX`] bytes (FreeBSD would truncate it silently).
    TooLong,
    /// Contains `/`, a NUL or a control character, or is `.` or `..`: it could not name
    /// `/dev/multipath/<name>`.
    BadCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("name is empty"),
            NameError::TooLong => write!(f, "name is longer than {NAME_MAX} bytes"),
            NameError::BadCharacter => {
                f.write_str("name contains '/', a control character, or is '.' or '..'")
            }
        }
    }
}

/// Checks that `name` can be a geom name: 1 to 15 bytes, no `/`, no control characters,
/// not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    if name == "." || name == ".." || name.chars().any(|c| c == '/' || c.is_control()) {
        return Err(NameError::BadCharacter);
    }
    Ok(())
}

/// Checks that `uuid` is empty (a MANUAL geom) or canonical UUID text:
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits of either case.
pub fn check_uuid(uuid: &str) -> bool {
    if uuid.is_empty() {
        return true;
    }
    uuid.len() == UUID_TEXT_LEN
        && uuid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// One decoded label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// `md_uuid`: canonical UUID text, or empty.
    pub uuid: String,
    /// `md_name`: the geom name, 1 to 15 bytes.
    pub name: String,
    /// `md_sectorsize`: the path's sector size, 0 meaning "do not check".
    pub sectorsize: u32,
    /// `md_size`: the path's whole media size, metadata sector included; 0: do not check.
    pub size: u64,
    /// `md_active_active`.
    pub mode: Mode,
}

/// Why a sector is not a usable label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than [`ENCODED_LEN`] bytes were given.
    Short(usize),
    /// The first 16 bytes are not `GEOM::MULTIPATH\0`: not ours.
    Magic,
    /// A MULTIPATH label of another version.
    Version(u32),
    /// `md_uuid` has no NUL or is not UUID text.
    Uuid,
    /// `md_name` has no NUL, is not UTF-8, or is not a valid name.
    Name(NameError),
    /// `md_active_active` is not 0, 1 or 2.
    Mode(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short(n) => {
                write!(
                    f,
                    "sector of {n} bytes is shorter than the {ENCODED_LEN}-byte label"
                )
            }
            DecodeError::Magic => f.write_str("no MULTIPATH magic"),
            DecodeError::Version(v) => write!(f, "label version {v}, expected {VERSION}"),
            DecodeError::Uuid => f.write_str("UUID field is not UUID text"),
            DecodeError::Name(e) => write!(f, "name field: {e}"),
            DecodeError::Mode(m) => write!(f, "mode byte {m} is not 0, 1 or 2"),
        }
    }
}

/// Decodes one label from the start of `sector` (normally a whole sector).
pub fn decode(sector: &[u8]) -> Result<Metadata, DecodeError> {
    if sector.len() < ENCODED_LEN {
        return Err(DecodeError::Short(sector.len()));
    }
    if &sector[OFF_MAGIC..OFF_MAGIC + MAGIC.len()] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let version = LittleEndian::read_u32(&sector[OFF_VERSION..]);
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    decode_v1(sector)
}

/// The version-1 body: everything after the magic and version checks.
fn decode_v1(sector: &[u8]) -> Result<Metadata, DecodeError> {
    let uuid = c_string(&sector[OFF_UUID..OFF_UUID + UUID_FIELD_LEN]).ok_or(DecodeError::Uuid)?;
    if !check_uuid(uuid) {
        return Err(DecodeError::Uuid);
    }
    let name_field = &sector[OFF_NAME..OFF_NAME + NAME_FIELD_LEN];
    if !name_field.contains(&0) {
        // Sixteen bytes and no terminator: a name longer than fits.
        return Err(DecodeError::Name(NameError::TooLong));
    }
    let name = c_string(name_field).ok_or(DecodeError::Name(NameError::BadCharacter))?;
    check_name(name).map_err(DecodeError::Name)?;
    let mode_byte = sector[OFF_MODE];
    let mode = Mode::from_byte(mode_byte).ok_or(DecodeError::Mode(mode_byte))?;
    Ok(Metadata {
        uuid: String::from(uuid),
        name: String::from(name),
        sectorsize: LittleEndian::read_u32(&sector[OFF_SECTORSIZE..]),
        size: LittleEndian::read_u64(&sector[OFF_SIZE..]),
        mode,
    })
}

/// The text before the first NUL of `field`, if there is a NUL and the text is UTF-8.
fn c_string(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&field[..end]).ok()
}

/// Why a label could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is shorter than [`ENCODED_LEN`].
    Short(usize),
    /// The name does not fit or is not a valid name.
    Name(NameError),
    /// The UUID is not UUID text.
    Uuid,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Short(n) => write!(f, "buffer of {n} bytes is too short for a label"),
            EncodeError::Name(e) => e.fmt(f),
            EncodeError::Uuid => f.write_str("UUID is not UUID text"),
        }
    }
}

impl Metadata {
    /// Writes the label into `buf` (normally one zeroed sector): the 89 encoded bytes, then
    /// zeros to the end of `buf`.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<(), EncodeError> {
        if buf.len() < ENCODED_LEN {
            return Err(EncodeError::Short(buf.len()));
        }
        check_name(&self.name).map_err(EncodeError::Name)?;
        if !check_uuid(&self.uuid) {
            return Err(EncodeError::Uuid);
        }
        buf.fill(0);
        buf[OFF_MAGIC..OFF_MAGIC + MAGIC.len()].copy_from_slice(MAGIC);
        buf[OFF_UUID..OFF_UUID + self.uuid.len()].copy_from_slice(self.uuid.as_bytes());
        buf[OFF_NAME..OFF_NAME + self.name.len()].copy_from_slice(self.name.as_bytes());
        LittleEndian::write_u32(&mut buf[OFF_VERSION..], VERSION);
        LittleEndian::write_u32(&mut buf[OFF_SECTORSIZE..], self.sectorsize);
        LittleEndian::write_u64(&mut buf[OFF_SIZE..], self.size);
        buf[OFF_MODE] = self.mode.to_byte();
        Ok(())
    }

    /// The label as one sector of `sectorsize` bytes.
    pub fn encode(&self, sectorsize: usize) -> Result<Vec<u8>, EncodeError> {
        let mut sector = alloc::vec![0u8; sectorsize];
        self.encode_into(&mut sector)?;
        Ok(sector)
    }
}

/// `true` if the first 16 bytes of `sector` are the MULTIPATH magic: what `clear` checks
/// before it erases a sector (g_metadata_clear's strcmp).
pub fn has_magic(sector: &[u8]) -> bool {
    sector.len() >= MAGIC.len() && &sector[..MAGIC.len()] == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn fred() -> Metadata {
        Metadata {
            uuid: String::from("3b8a5e2c-8f1d-11ef-9b6a-0800275ad1c3"),
            name: String::from("FRED"),
            sectorsize: 512,
            size: 67_108_864,
            mode: Mode::ActivePassive,
        }
    }

    /// The label `gmultipath label FRED da0 da2` writes for a 64 MiB, 512-byte-sector disk,
    /// byte for byte, annotated per field.
    const FRED_FIXTURE: [u8; ENCODED_LEN] = [
        // md_magic: "GEOM::MULTIPATH\0"
        b'G', b'E', b'O', b'M', b':', b':', b'M', b'U', b'L', b'T', b'I', b'P', b'A', b'T', b'H', 0,
        // md_uuid: "3b8a5e2c-8f1d-11ef-9b6a-0800275ad1c3\0" + 3 zero bytes
        b'3', b'b', b'8', b'a', b'5', b'e', b'2', b'c', b'-', b'8', b'f', b'1', b'd', b'-', b'1',
        b'1', b'e', b'f', b'-', b'9', b'b', b'6', b'a', b'-', b'0', b'8', b'0', b'0', b'2', b'7',
        b'5', b'a', b'd', b'1', b'c', b'3', 0, 0, 0, 0,
        // md_name: "FRED\0" + 11 zero bytes
        b'F', b'R', b'E', b'D', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        // md_version: 1, little-endian
        1, 0, 0, 0, // md_sectorsize: 512 = 0x200, little-endian
        0x00, 0x02, 0, 0, // md_size: 67108864 = 0x0400_0000, little-endian
        0x00, 0x00, 0x00, 0x04, 0, 0, 0, 0, // md_active_active: 0 = Active/Passive
        0,
    ];

    #[test]
    fn encodes_freebsd_v1_bytes_exactly() {
        let sector = fred().encode(512).unwrap();
        assert_eq!(sector.len(), 512);
        assert_eq!(&sector[..ENCODED_LEN], &FRED_FIXTURE[..]);
        assert!(sector[ENCODED_LEN..].iter().all(|&b| b == 0), "zero fill");
    }

    #[test]
    fn decodes_the_fixture() {
        let mut sector = vec![0u8; 512];
        sector[..ENCODED_LEN].copy_from_slice(&FRED_FIXTURE);
        assert_eq!(decode(&sector), Ok(fred()));
    }

    #[test]
    fn round_trips_each_mode_and_a_4k_sector() {
        for mode in [Mode::ActivePassive, Mode::ActiveActive, Mode::ActiveRead] {
            let md = Metadata {
                mode,
                sectorsize: 4096,
                ..fred()
            };
            let sector = md.encode(4096).unwrap();
            assert_eq!(sector[OFF_MODE], mode.to_byte());
            assert_eq!(decode(&sector), Ok(md));
        }
    }

    #[test]
    fn field_offsets_are_packed_without_padding() {
        assert_eq!(OFF_UUID, OFF_MAGIC + MAGIC.len());
        assert_eq!(OFF_NAME, OFF_UUID + UUID_FIELD_LEN);
        assert_eq!(OFF_VERSION, OFF_NAME + NAME_FIELD_LEN);
        assert_eq!(OFF_SECTORSIZE, OFF_VERSION + 4);
        assert_eq!(OFF_SIZE, OFF_SECTORSIZE + 4);
        assert_eq!(OFF_MODE, OFF_SIZE + 8);
        assert_eq!(ENCODED_LEN, OFF_MODE + 1);
    }

    #[test]
    fn short_sector_is_refused() {
        assert_eq!(decode(&FRED_FIXTURE[..88]), Err(DecodeError::Short(88)));
        assert_eq!(
            fred().encode_into(&mut [0u8; 10]),
            Err(EncodeError::Short(10))
        );
    }

    #[test]
    fn wrong_magic_is_refused_before_anything_else() {
        let mut sector = FRED_FIXTURE;
        sector[15] = b'X'; // magic no longer NUL-terminated at 16 bytes
        sector[OFF_VERSION] = 9;
        assert_eq!(decode(&sector), Err(DecodeError::Magic));
        assert_eq!(decode(&[0u8; 512]), Err(DecodeError::Magic));
    }

    #[test]
    fn wrong_version_is_reported_with_its_number() {
        let mut sector = FRED_FIXTURE;
        sector[OFF_VERSION] = 2;
        assert_eq!(decode(&sector), Err(DecodeError::Version(2)));
    }

    #[test]
    fn malformed_uuid_text_is_refused() {
        let mut sector = FRED_FIXTURE;
        sector[OFF_UUID + 8] = b'x';
        assert_eq!(decode(&sector), Err(DecodeError::Uuid));
        let mut unterminated = FRED_FIXTURE;
        unterminated[OFF_UUID..OFF_UUID + UUID_FIELD_LEN].fill(b'a');
        assert_eq!(decode(&unterminated), Err(DecodeError::Uuid));
    }

    #[test]
    fn empty_uuid_decodes_as_a_manual_label() {
        let md = Metadata {
            uuid: String::new(),
            ..fred()
        };
        assert_eq!(decode(&md.encode(512).unwrap()), Ok(md));
    }

    #[test]
    fn unterminated_or_bad_name_is_refused() {
        let mut sector = FRED_FIXTURE;
        sector[OFF_NAME..OFF_NAME + NAME_FIELD_LEN].fill(b'N');
        assert_eq!(decode(&sector), Err(DecodeError::Name(NameError::TooLong)));
        let mut not_utf8 = FRED_FIXTURE;
        not_utf8[OFF_NAME + 1] = 0xff;
        assert_eq!(
            decode(&not_utf8),
            Err(DecodeError::Name(NameError::BadCharacter))
        );
        let mut empty = FRED_FIXTURE;
        empty[OFF_NAME] = 0;
        assert_eq!(decode(&empty), Err(DecodeError::Name(NameError::Empty)));
        let mut slash = FRED_FIXTURE;
        slash[OFF_NAME + 1] = b'/';
        assert_eq!(
            decode(&slash),
            Err(DecodeError::Name(NameError::BadCharacter))
        );
    }

    #[test]
    fn mode_byte_beyond_two_is_refused() {
        let mut sector = FRED_FIXTURE;
        sector[OFF_MODE] = 3;
        assert_eq!(decode(&sector), Err(DecodeError::Mode(3)));
    }

    #[test]
    fn fifteen_byte_name_fits_and_sixteen_is_refused() {
        let fifteen = Metadata {
            name: String::from("ABCDEFGHIJKLMNO"),
            ..fred()
        };
        let sector = fifteen.encode(512).unwrap();
        assert_eq!(sector[OFF_NAME + 15], 0, "NUL after 15 bytes");
        assert_eq!(decode(&sector), Ok(fifteen));
        let sixteen = Metadata {
            name: String::from("ABCDEFGHIJKLMNOP"),
            ..fred()
        };
        assert_eq!(
            sixteen.encode(512),
            Err(EncodeError::Name(NameError::TooLong))
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("a/b"), Err(NameError::BadCharacter));
        assert_eq!(check_name(".."), Err(NameError::BadCharacter));
        assert_eq!(check_name("a\nb"), Err(NameError::BadCharacter));
        assert_eq!(check_name("FRED-1"), Ok(()));
    }

    #[test]
    fn uuid_text_is_checked() {
        assert!(check_uuid("3B8A5E2C-8F1D-11EF-9B6A-0800275AD1C3"));
        assert!(check_uuid(""));
        assert!(!check_uuid("3b8a5e2c-8f1d-11ef-9b6a-0800275ad1c"));
        assert!(!check_uuid("3b8a5e2c_8f1d-11ef-9b6a-0800275ad1c3"));
        assert!(!check_uuid("3b8a5e2c-8f1d-11ef-9b6a-0800275ad1cg"));
    }

    #[test]
    fn has_magic_looks_at_the_first_sixteen_bytes_only() {
        assert!(has_magic(&FRED_FIXTURE));
        assert!(!has_magic(&FRED_FIXTURE[..15]));
        assert!(!has_magic(&[0u8; 512]));
    }
}
