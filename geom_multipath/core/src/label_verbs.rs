//! The userland halves of `label` and `clear` (geom_multipath.c's `mp_label` and
//! `mp_clear`), as pure decisions the CLI calls: which checks fail with which text, what
//! sector to write where, and how to judge what it reads back. The CLI does the opening,
//! reading and writing.

use alloc::string::String;
use alloc::vec::Vec;

use crate::ctl::CtlError;
use crate::errno::Errno;
use crate::metadata::{self, Metadata, ENCODED_LEN};
use crate::state::Mode;

/// What the CLI found out about one provider named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    /// The name as given (`da0` or `/dev/da0`).
    pub name: String,
    /// Its size and sector size, or the reason it could not be read (strerror text).
    pub geometry: Result<(u64, u32), String>,
}

/// What `label` must do once every check passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelPlan {
    /// The provider the label is written to (arg1).
    pub target: String,
    /// Byte offset of its last sector.
    pub offset: u64,
    /// The whole sector to write.
    pub sector: Vec<u8>,
    /// The other providers, to be opened for writing, read at `offset`, and closed, so
    /// that they are re-tasted.
    pub touch: Vec<String>,
}

/// Plans `label [-AR] name prov ...`: `name` is arg0, `providers` arg1 onwards, `uuid` a
/// fresh UUID in text form. Checks, in FreeBSD's order: the argument count; each
/// provider's geometry against the first one's. Beyond FreeBSD, a name that does not fit
/// is refused instead of being cut, a provider named twice (`label G1 da0 /dev/da0`) is
/// refused, and a provider with an unusable sector size or room for nothing but the label
/// is refused.
pub fn plan_label(
    name: &str,
    mode: Mode,
    uuid: &str,
    providers: &[Probed],
) -> Result<LabelPlan, CtlError> {
    if providers.is_empty() {
        return Err(CtlError::WrongNumberOfArguments);
    }
    metadata::check_name(name).map_err(|why| CtlError::BadName(String::from(name), why))?;
    let bare = |p: &Probed| String::from(p.name.strip_prefix("/dev/").unwrap_or(&p.name));
    if let Some((_, twice)) = providers
        .iter()
        .enumerate()
        .find(|(i, p)| providers[..*i].iter().any(|q| bare(q) == bare(p)))
    {
        return Err(CtlError::NamedTwice(bare(twice)));
    }
    let mut first: Option<(u64, u32)> = None;
    for p in providers {
        let (size, sector) = match &p.geometry {
            Ok(g) if g.0 != 0 && g.1 != 0 => *g,
            Ok(_) => {
                return Err(CtlError::CannotGetInfo(
                    p.name.clone(),
                    String::from("media size or sector size is 0"),
                ))
            }
            Err(why) => return Err(CtlError::CannotGetInfo(p.name.clone(), why.clone())),
        };
        match first {
            None => first = Some((size, sector)),
            Some((_, s)) if s != sector => {
                return Err(CtlError::SectorSizeDifferent(p.name.clone(), sector))
            }
            Some((m, _)) if m != size => {
                return Err(CtlError::MediaSizeDifferent(p.name.clone(), size))
            }
            Some(_) => {}
        }
    }
    let (size, sectorsize) = first.expect("at least one provider");
    if (sectorsize as usize) < ENCODED_LEN || !sectorsize.is_power_of_two() {
        return Err(CtlError::BadSectorSize(
            providers[0].name.clone(),
            sectorsize,
        ));
    }
    if size < 2 * u64::from(sectorsize) || size % u64::from(sectorsize) != 0 {
        return Err(CtlError::TooSmall(
            providers[0].name.clone(),
            size,
            sectorsize,
        ));
    }
    if !metadata::check_uuid(uuid) || uuid.is_empty() {
        return Err(CtlError::CannotCreateUuid);
    }
    let md = Metadata {
        uuid: String::from(uuid),
        name: String::from(name),
        sectorsize,
        size,
        mode,
    };
    let sector = md
        .encode(sectorsize as usize)
        .map_err(|_| CtlError::CannotCreateUuid)?;
    Ok(LabelPlan {
        target: providers[0].name.clone(),
        offset: size - u64::from(sectorsize),
        sector,
        touch: providers[1..].iter().map(|p| p.name.clone()).collect(),
    })
}

/// `label`'s verdict on a touched provider: `true` if its last sector now holds exactly
/// the label written through the first provider (so it is another path to the same disk).
pub fn touched_is_a_path(written: &[u8], read_back: &[u8]) -> bool {
    written == read_back
}

/// `clear`'s check of a provider's last sector before it is zeroed: EINVAL unless it
/// starts with the MULTIPATH magic (`g_metadata_clear` with a magic).
pub fn may_clear(last_sector: &[u8]) -> Result<(), Errno> {
    if metadata::has_magic(last_sector) {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::NameError;
    use alloc::string::ToString;
    use alloc::vec;

    const UUID: &str = "3b8a5e2c-8f1d-11ef-9b6a-0800275ad1c3";

    fn prov(name: &str, size: u64, sector: u32) -> Probed {
        Probed {
            name: String::from(name),
            geometry: Ok((size, sector)),
        }
    }

    #[test]
    fn writes_the_label_to_the_first_provider_and_touches_the_rest() {
        let plan = plan_label(
            "FRED",
            Mode::ActiveActive,
            UUID,
            &[prov("da0", 1 << 20, 512), prov("da2", 1 << 20, 512)],
        )
        .unwrap();
        assert_eq!(plan.target, "da0");
        assert_eq!(plan.offset, (1 << 20) - 512);
        assert_eq!(plan.touch, ["da2"]);
        assert_eq!(plan.sector.len(), 512);
        let md = metadata::decode(&plan.sector).unwrap();
        assert_eq!(md.name, "FRED");
        assert_eq!(
            md.size,
            1 << 20,
            "md_size is the whole path, label included"
        );
        assert_eq!(md.mode, Mode::ActiveActive);
    }

    #[test]
    fn checks_come_in_freebsds_order_with_its_texts() {
        let err = |p: &[Probed]| {
            plan_label("FRED", Mode::ActivePassive, UUID, p)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(&[]), "wrong number of arguments.");
        assert_eq!(
            err(&[Probed {
                name: "da9".into(),
                geometry: Err("No such file or directory".into())
            }]),
            "cannot get information about da9: No such file or directory."
        );
        assert_eq!(
            err(&[prov("da0", 1 << 20, 512), prov("da1", 1 << 20, 4096)]),
            "da1 sector size 4096 different."
        );
        assert_eq!(
            err(&[prov("da0", 1 << 20, 512), prov("da1", 2 << 20, 512)]),
            "da1 media size 2097152 different."
        );
    }

    /// Issue 11 item 10: `label G1 loop0 loop0` wrote the label and exited 0 silently.
    #[test]
    fn a_provider_named_twice_is_refused_before_anything_is_written() {
        for second in ["da0", "/dev/da0"] {
            let err = plan_label(
                "FRED",
                Mode::ActivePassive,
                UUID,
                &[prov("da0", 1 << 20, 512), prov(second, 1 << 20, 512)],
            )
            .unwrap_err();
            assert_eq!(err.to_string(), "Provider da0 is named more than once.");
        }
    }

    #[test]
    fn long_names_are_refused_not_truncated() {
        let e = plan_label(
            "ABCDEFGHIJKLMNOP",
            Mode::ActivePassive,
            UUID,
            &[prov("da0", 1 << 20, 512)],
        )
        .unwrap_err();
        assert_eq!(
            e,
            CtlError::BadName("ABCDEFGHIJKLMNOP".into(), NameError::TooLong)
        );
    }

    #[test]
    fn unusable_sizes_are_refused() {
        let e = plan_label("F", Mode::ActivePassive, UUID, &[prov("da0", 512, 512)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "da0 is too small: 512 bytes with 512-byte sectors."
        );
        let e = plan_label("F", Mode::ActivePassive, UUID, &[prov("da0", 1000, 500)]).unwrap_err();
        assert_eq!(e.to_string(), "da0 sector size 500 is not usable.");
        let e = plan_label("F", Mode::ActivePassive, UUID, &[prov("da0", 0, 512)]).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot get information about da0:"));
    }

    #[test]
    fn touched_provider_verdict_compares_whole_sectors() {
        let a = vec![1u8; 512];
        let mut b = a.clone();
        assert!(touched_is_a_path(&a, &b));
        b[511] = 0;
        assert!(!touched_is_a_path(&a, &b));
    }

    #[test]
    fn clear_needs_the_magic() {
        let md = Metadata {
            uuid: UUID.into(),
            name: "FRED".into(),
            sectorsize: 512,
            size: 1 << 20,
            mode: Mode::ActivePassive,
        };
        assert_eq!(may_clear(&md.encode(512).unwrap()), Ok(()));
        assert_eq!(may_clear(&[0u8; 512]), Err(Errno::EINVAL));
    }
}
