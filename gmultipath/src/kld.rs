//! How geom(8) names and finds a class's kernel module (`sbin/geom/core/geom.c`), as pure
//! functions tested on every platform; the kernel backend (`crate::freebsd`) makes the
//! calls.
//!
//! * The class comes from the program's name, as `get_class` decides it: `gmultipath` →
//!   `multipath`, `geom multipath` → `multipath`, lower-cased.
//! * The module is `g_<class>` (`modfind`, what DECLARE_GEOM_CLASS registers) and the file
//!   is `geom_<class>` (`kldload`, `kldfind`), i.e. `geom_<class>.ko`.
//! * `load` is available (`std_load_available`) when the module is already in the kernel
//!   or a file `<dir>/geom_<class>.ko` exists in one of the `;`-separated directories of
//!   `kern.module_path`.

use std::path::{Path, PathBuf};

/// The kernel names of one GEOM class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassModule {
    /// The module name `modfind` looks for (`g_multipath`).
    pub module: String,
    /// The kernel file name `kldload`/`kldfind` take (`geom_multipath`).
    pub file: String,
}

impl ClassModule {
    /// The names for class `class` (`multipath`, any case).
    pub fn for_class(class: &str) -> ClassModule {
        let class = class.to_ascii_lowercase();
        ClassModule {
            module: format!("g_{class}"),
            file: format!("geom_{class}"),
        }
    }

    /// The file name in a module directory (`geom_multipath.ko`).
    pub fn ko(&self) -> String {
        format!("{}.ko", self.file)
    }

    /// `std_load_available`'s search: the first `<dir>/geom_<class>.ko` for which `exists`
    /// holds, over the directories of `module_path` (`kern.module_path`, `;`-separated;
    /// empty entries are skipped, as strtok skips them).
    pub fn find_file(&self, module_path: &str, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let ko = self.ko();
        module_path
            .split(';')
            .filter(|dir| !dir.is_empty())
            .map(|dir| PathBuf::from(format!("{dir}/{ko}")))
            .find(|p| exists(p))
    }
}

/// The class `get_class` takes from `argv`: the word after `geom`, or the program's name
/// without its leading `g`, lower-cased. `None` when geom(8) itself would print its own
/// usage or refuse the program name; the caller then needs no backend decision.
pub fn class_of(argv: &[String]) -> Option<String> {
    let prog = argv.first()?;
    let base = prog.rsplit('/').next().unwrap_or(prog);
    let class = if base == "geom" {
        argv.get(1)?.as_str()
    } else {
        base.strip_prefix('g')?
    };
    Some(class.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn module_and_file_names_follow_geom8() {
        let m = ClassModule::for_class("MULTIPATH");
        assert_eq!(m.module, "g_multipath");
        assert_eq!(m.file, "geom_multipath");
        assert_eq!(m.ko(), "geom_multipath.ko");
        assert_eq!(ClassModule::for_class("nop").module, "g_nop");
    }

    #[test]
    fn the_class_comes_from_the_program_name_or_the_first_word() {
        assert_eq!(
            class_of(&argv(&["/sbin/gmultipath", "list"])).as_deref(),
            Some("multipath")
        );
        assert_eq!(class_of(&argv(&["gnop"])).as_deref(), Some("nop"));
        assert_eq!(
            class_of(&argv(&["geom", "MultiPath", "status"])).as_deref(),
            Some("multipath")
        );
        assert_eq!(class_of(&argv(&["geom"])), None);
        assert_eq!(class_of(&argv(&["multipath"])), None);
        assert_eq!(class_of(&[]), None);
    }

    #[test]
    fn the_module_file_is_searched_in_module_path_order() {
        let m = ClassModule::for_class("multipath");
        let present = [
            "/boot/modules/geom_multipath.ko",
            "/boot/kernel/geom_multipath.ko",
        ];
        let exists = |p: &Path| present.iter().any(|q| Path::new(q) == p);
        assert_eq!(
            m.find_file("/boot/kernel;/boot/modules", exists),
            Some(PathBuf::from("/boot/kernel/geom_multipath.ko"))
        );
        assert_eq!(
            m.find_file(";;/boot/modules;", exists),
            Some(PathBuf::from("/boot/modules/geom_multipath.ko"))
        );
        assert_eq!(m.find_file("/usr/local/modules", exists), None);
        assert_eq!(m.find_file("", exists), None);
    }
}
