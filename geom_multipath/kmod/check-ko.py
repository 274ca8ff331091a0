#!/usr/bin/env python3
"""Checks a linked geom_multipath.ko the way FreeBSD's kernel linker will see it.

cross-build.sh links the module on Linux as bsd.kmod.mk does and runs this on the result.
It reads the ELF file itself (no binutils needed for the structure) and checks:

  * ELF64, the architecture's machine; amd64: a relocatable object (ET_REL) whose OS/ABI
    is FreeBSD (what `ld -m elf_x86_64_fbsd` gives); arm64: a shared object (ET_DYN);
  * set_modmetadata_set: the module depends on "kernel" (its version range), declares the
    module "g_multipath" (DECLARE_GEOM_CLASS) and the version of "geom_multipath"
    (MODULE_VERSION) -- decoded from the structures the set points at;
  * set_sysctl_set: exactly the oids the module enforces -- the kern.geom.multipath node,
    one oid per row of the tunables table (sysctl/src/lib.rs) not marked host_only, and
    kern.features.geom_multipath -- each oid carrying its leaf name and description;
  * set_sdt_probes_set: every SDT probe the shim defines (KDTRACE_HOOKS is on);
  * every undefined symbol is in kernel-symbols.txt, each entry of which is checked to be
    declared by the header it names (or is marked as emitted by the compiler); the weak
    __start_set_X/__stop_set_X references sys/linker_set.h makes are allowed for the sets
    the module itself has, which the kernel linker resolves;
  * no global definition left (kmod.mk's localisation, EXPORT_SYMS=NO, happened);
  * amd64: only the relocation types the amd64 kernel linker applies (R_X86_64_64, PC32,
    PLT32, 32S); no SSE/AVX/x87 register in the code (objdump); no TLS anywhere.

Usage: check-ko.py amd64|aarch64 FILE.ko
"""

import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

EM_X86_64, EM_AARCH64 = 62, 183
ET_REL, ET_DYN = 1, 3
ELFOSABI_FREEBSD = 9
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_DYNSYM = 2, 4, 8, 11
SHF_TLS = 0x400
STB_GLOBAL, STB_WEAK = 1, 2
STT_TLS = 6
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
MDT_DEPEND, MDT_MODULE, MDT_VERSION = 1, 2, 3

X86_RELOCS = {1: "R_X86_64_64", 2: "R_X86_64_PC32", 4: "R_X86_64_PLT32", 11: "R_X86_64_32S"}
R_AARCH64_RELATIVE = 1027


class Elf:
    """The parts of an ELF64 little-endian file this check needs."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] != 2 or d[5] != 1:
            raise SystemExit(f"{path}: not a little-endian ELF64 file")
        self.osabi = d[7]
        (self.type, self.machine, _, _, _, shoff, _, _, _, _, shentsize, shnum,
         shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", d, 16)
        self.sections = []
        for i in range(shnum):
            (name, typ, flags, addr, off, size, link, info, _, entsize) = struct.unpack_from(
                "<IIQQQQIIQQ", d, shoff + i * shentsize)
            self.sections.append(dict(name=name, type=typ, flags=flags, addr=addr, off=off,
                                      size=size, link=link, info=info, entsize=entsize))
        strtab = self.sections[shstrndx]
        for s in self.sections:
            s["name"] = self.cstr_at(strtab["off"] + s["name"])
        self.by_name = {s["name"]: i for i, s in enumerate(self.sections)}
        self.symtabs = {}
        for i, s in enumerate(self.sections):
            if s["type"] in (SHT_SYMTAB, SHT_DYNSYM):
                self.symtabs[i] = self.read_symbols(s)
        symtab = [i for i, s in enumerate(self.sections) if s["type"] == SHT_SYMTAB]
        self.symbols = self.symtabs[symtab[0]] if symtab else []
        # Relocations by the place they patch: (section index, offset) -> (type, symbol, addend).
        self.relocs = {}
        self.reloc_types = {}
        for s in self.sections:
            if s["type"] != SHT_RELA:
                continue
            syms = self.symtabs.get(s["link"], [])
            for k in range(s["size"] // 24):
                off, info, addend = struct.unpack_from("<QQq", d, s["off"] + k * 24)
                typ, symi = info & 0xFFFFFFFF, info >> 32
                self.reloc_types[typ] = self.reloc_types.get(typ, 0) + 1
                sym = syms[symi] if symi < len(syms) else None
                if self.type == ET_REL:
                    place = (s["info"], off)
                else:
                    place = self.place_of_addr(off)
                if place:
                    self.relocs[place] = (typ, sym, addend)

    def cstr_at(self, off):
        end = self.data.index(b"\0", off)
        return self.data[off:end].decode("latin-1")

    def read_symbols(self, s):
        strtab = self.sections[s["link"]]
        out = []
        for k in range(s["size"] // 24):
            name, info, _, shndx, value, size = struct.unpack_from(
                "<IBBHQQ", self.data, s["off"] + k * 24)
            out.append(dict(name=self.cstr_at(strtab["off"] + name), bind=info >> 4,
                            type=info & 0xF, shndx=shndx, value=value, size=size))
        return out

    def place_of_addr(self, addr):
        """(section index, offset) of a virtual address in a linked (ET_DYN) file."""
        for i, s in enumerate(self.sections):
            if s["addr"] and s["addr"] <= addr < s["addr"] + s["size"]:
                return (i, addr - s["addr"])
        return None

    def pointer(self, place):
        """Where the 8-byte pointer stored at `place` points: ("sym", name) for an undefined
        symbol, ("at", section, offset) for something in the file, or None."""
        sec, off = place
        rel = self.relocs.get(place)
        if rel is None:
            return None
        typ, sym, addend = rel
        if self.type == ET_DYN:
            if typ == R_AARCH64_RELATIVE or sym is None or sym["shndx"] == SHN_UNDEF and not sym["name"]:
                target = self.place_of_addr(addend)
                return ("at",) + target if target else None
            if sym["shndx"] == SHN_UNDEF:
                return ("sym", sym["name"])
            target = self.place_of_addr(sym["value"] + addend)
            return ("at",) + target if target else None
        if sym["shndx"] == SHN_UNDEF:
            return ("sym", sym["name"])
        if sym["shndx"] >= len(self.sections):
            return None
        return ("at", sym["shndx"], sym["value"] + addend)

    def bytes_at(self, sec, off, n):
        s = self.sections[sec]
        if s["type"] == SHT_NOBITS:
            return bytes(n)
        return self.data[s["off"] + off:s["off"] + off + n]

    def string(self, target):
        if not target or target[0] != "at":
            return None
        _, sec, off = target
        s = self.sections[sec]
        if s["type"] == SHT_NOBITS or off >= s["size"]:
            return None
        return self.cstr_at(s["off"] + off)

    def defined_symbol_at(self, sec, off):
        """The sized symbol defined at (section, offset)."""
        for sym in self.symbols:
            if sym["shndx"] != sec or sym["size"] == 0:
                continue
            # In a linked file a symbol's value is an address, in an object an offset.
            value = sym["value"] - (self.sections[sec]["addr"] if self.type == ET_DYN else 0)
            if value == off:
                return sym
        return None

    def set_entries(self, name):
        """The targets of the pointers in linker set `name` (section set_<name>)."""
        i = self.by_name.get("set_" + name)
        if i is None:
            return None
        return [self.pointer((i, off)) for off in range(0, self.sections[i]["size"], 8)]


problems = []


def bad(msg):
    problems.append(msg)
    print(f"  FAIL: {msg}", file=sys.stderr)


def check_header(elf, arch):
    machine = {"amd64": EM_X86_64, "aarch64": EM_AARCH64}[arch]
    want_type = ET_REL if arch == "amd64" else ET_DYN
    print(f"==> ELF: type {elf.type}, machine {elf.machine}, OS/ABI {elf.osabi}")
    if elf.machine != machine:
        bad(f"machine {elf.machine}, not {machine}")
    if elf.type != want_type:
        bad(f"ELF type {elf.type}, kmod.mk makes {want_type} on {arch}")
    if arch == "amd64" and elf.osabi != ELFOSABI_FREEBSD:
        bad(f"OS/ABI {elf.osabi}, not FreeBSD ({ELFOSABI_FREEBSD}): the link lacks -m elf_x86_64_fbsd")


def check_metadata(elf):
    entries = elf.set_entries("modmetadata_set")
    if not entries:
        bad("no set_modmetadata_set: no module in this object")
        return
    found = []
    for target in entries:
        if not target or target[0] != "at":
            bad(f"a set_modmetadata_set entry does not point into the module: {target}")
            continue
        _, sec, off = target
        md_version, md_type = struct.unpack("<ii", elf.bytes_at(sec, off, 8))
        data = elf.pointer((sec, off + 8))
        cval = elf.string(elf.pointer((sec, off + 16)))
        if md_type == MDT_DEPEND and data and data[0] == "at":
            lo, pref, hi = struct.unpack("<iii", elf.bytes_at(data[1], data[2], 12))
            found.append(("depend", cval, (lo, pref, hi)))
        elif md_type == MDT_MODULE and data and data[0] == "at":
            name = elf.string(elf.pointer((data[1], data[2])))
            found.append(("module", cval, name))
        elif md_type == MDT_VERSION and data and data[0] == "at":
            (version,) = struct.unpack("<i", elf.bytes_at(data[1], data[2], 4))
            found.append(("version", cval, version))
        else:
            found.append(("type %d" % md_type, cval, None))
        if md_version != 1:
            bad(f"metadata {cval}: md_version {md_version}, not MDT_STRUCT_VERSION 1")
    print("==> module metadata (set_modmetadata_set):")
    for kind, cval, value in found:
        print(f"      {kind:8} {cval}: {value}")
    kinds = {(k, c) for k, c, _ in found}
    for want in [("depend", "kernel"), ("module", "g_multipath"), ("version", "geom_multipath")]:
        if want not in kinds:
            bad(f"set_modmetadata_set has no {want[0]} entry for {want[1]}")
    for kind, cval, value in found:
        if kind == "module" and value != cval:
            bad(f"module {cval}: its moduledata names {value}")
        if kind == "depend" and cval == "kernel" and not value[0] <= value[1] <= value[2]:
            bad(f"kernel dependency range {value} is not min <= preferred <= max")


def enforced_oids():
    """The oids the module should register, each with the strings its oid must carry (its
    leaf name and description): the tunables table's node and rows not marked host_only, as
    the sysctl crate lists them (its example kernel_oids), and the FEATURE the shim declares."""
    listing = subprocess.run(
        ["cargo", "run", "--quiet", "-p", "geom_multipath_sysctl", "--example", "kernel_oids"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    oids = {}
    for line in listing.splitlines():
        name, leaf, description = line.split("\t")
        oids[name] = (leaf, description)
    shim = open(os.path.join(HERE, "g_multipath_shim.c")).read()
    for leaf, description in re.findall(r'(?<![\w])FEATURE\((\w+), "([^"]*)"\)', shim):
        oids["kern.features." + leaf] = (leaf, description)
    if len(oids) < 3:
        raise SystemExit(f"check-ko.py: too few oids found: {sorted(oids)}")
    return oids


def check_sysctls(elf):
    entries = elf.set_entries("sysctl_set") or []
    want = enforced_oids()
    # SYSCTL_OID names its struct sysctl__<parent>_<leaf>, the parent being _kern_geom...;
    # each oid must point at its leaf name and its description.
    want_syms = {"sysctl___" + name.replace(".", "_"): (name, texts) for name, texts in want.items()}
    got = {}
    for target in entries:
        sym = elf.defined_symbol_at(target[1], target[2]) if target and target[0] == "at" else None
        if sym is None:
            bad(f"a set_sysctl_set entry does not point at a sysctl_oid: {target}")
            continue
        # The strings the oid points at (its name, format, description).
        strings = set()
        for off in range(0, sym["size"], 8):
            s = elf.string(elf.pointer((target[1], target[2] + off)))
            if s is not None:
                strings.add(s)
        got[sym["name"]] = strings
    print("==> sysctl oids (set_sysctl_set):")
    for name in sorted(got):
        print(f"      {want_syms.get(name, (name,))[0]}")
    for sym, (name, texts) in want_syms.items():
        if sym not in got:
            bad(f"the module does not register {name}")
            continue
        for text in texts:
            if text not in got[sym]:
                bad(f"{name}: its oid does not carry {text!r} (name, description)")
    for sym in got:
        if sym not in want_syms:
            bad(f"the module registers {sym}, which it does not enforce (host-only or unknown)")


def check_sdt(elf):
    shim = open(os.path.join(HERE, "g_multipath_shim.c")).read()
    probes = re.findall(r"SDT_PROBE_DEFINE\d\((\w+), (\w+), (\w*), (\w+)", shim)
    entries = elf.set_entries("sdt_probes_set") or []
    names = set()
    for target in entries:
        sym = elf.defined_symbol_at(target[1], target[2]) if target and target[0] == "at" else None
        if sym:
            names.add(sym["name"])
    print(f"==> SDT probes (set_sdt_probes_set): {len(names)}")
    for prov, mod, func, name in probes:
        sym = f"sdt_{prov}_{mod}_{func}_{name}"
        if sym not in names:
            bad(f"SDT probe {prov}:{mod}:{func}:{name} is not in the module (KDTRACE_HOOKS off?)")


def allowed_symbols(arch):
    """kernel-symbols.txt, each entry checked against the header it names."""
    inc = subprocess.run([os.path.join(ROOT, "tests", "freebsd-sdk.sh"), "include", arch],
                         check=True, capture_output=True, text=True).stdout.strip()
    allowed = {}
    for n, line in enumerate(open(os.path.join(HERE, "kernel-symbols.txt")), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split(None, 2)
        if len(fields) < 2:
            bad(f"kernel-symbols.txt:{n}: want SYMBOL HEADER [TEXT]")
            continue
        sym, header = fields[0], fields[1]
        text = fields[2] if len(fields) > 2 else sym
        if header == "compiler":
            allowed[sym] = f"compiler: {text}"
            continue
        path = os.path.join(inc, header)
        if not os.path.exists(path):
            path = os.path.join(HERE, header)
        if not os.path.exists(path):
            bad(f"kernel-symbols.txt:{n}: {sym}: no header {header}")
            continue
        body = open(path, encoding="latin-1").read()
        if text == sym:
            found = re.search(r"(?<![\w])" + re.escape(sym) + r"(?![\w])", body)
        else:
            found = text in body
        if not found:
            bad(f"kernel-symbols.txt:{n}: {header} does not declare {sym} (looked for {text!r})")
            continue
        allowed[sym] = header
    return allowed


def check_undefined(elf, arch):
    allowed = allowed_symbols(arch)
    sets = {s["name"][4:] for s in elf.sections if s["name"].startswith("set_")}
    symbols = list(elf.symbols)
    for i, s in enumerate(elf.sections):
        if s["type"] == SHT_DYNSYM:
            symbols += elf.symtabs[i]
    undefined = sorted({s["name"] for s in symbols if s["shndx"] == SHN_UNDEF and s["name"]})
    print(f"==> undefined symbols: {len(undefined)}")
    used = set()
    for name in undefined:
        m = re.match(r"__(start|stop)_set_(\w+)$", name)
        weak = any(s["name"] == name and s["bind"] == STB_WEAK for s in symbols)
        if m and m.group(2) in sets and weak:
            continue  # sys/linker_set.h's weak reference to a set of this module
        if name in allowed:
            used.add(name)
            continue
        bad(f"undefined symbol {name} is not in kernel-symbols.txt")
    unused = sorted(set(allowed) - used)
    if unused:
        print(f"    (kernel-symbols.txt entries this module does not use: {' '.join(unused)})")
    # (The final shareable link on arm64 defines the sets' bounds itself.)
    globals_left = sorted({s["name"] for s in elf.symbols
                           if s["bind"] in (STB_GLOBAL, STB_WEAK) and s["shndx"] != SHN_UNDEF
                           and s["shndx"] != SHN_ABS and s["name"]
                           and not re.match(r"__(start|stop)_set_\w+$", s["name"])})
    if globals_left:
        bad(f"global definitions left (symbol localisation did not run?): {' '.join(globals_left[:8])}")


def check_code(elf, arch, path):
    if arch == "amd64":
        names = {t: X86_RELOCS.get(t, f"type {t}") for t in elf.reloc_types}
        print("==> relocation types: " + ", ".join(
            f"{names[t]} x{n}" for t, n in sorted(elf.reloc_types.items())))
        others = [names[t] for t in elf.reloc_types if t not in X86_RELOCS]
        if others:
            bad(f"relocations the amd64 kernel linker rejects: {' '.join(others)}")
        disasm = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", path], check=True,
                                capture_output=True, text=True).stdout
        fpu = [ln for ln in disasm.splitlines() if re.search(r"%(xmm|ymm|zmm|st)\b|%st\(", ln)]
        print(f"==> SSE/AVX/x87 register uses: {len(fpu)}")
        if fpu:
            bad("SSE/AVX/x87 registers in the code:\n" + "\n".join(fpu[:5]))
    else:
        names = {257: "R_AARCH64_ABS64", 1025: "R_AARCH64_GLOB_DAT", 1026: "R_AARCH64_JUMP_SLOT",
                 1027: "R_AARCH64_RELATIVE"}
        print("==> dynamic relocation types: " + ", ".join(
            f"{names.get(t, f'type {t}')} x{n}" for t, n in sorted(elf.reloc_types.items())))
    tls = [s["name"] for s in elf.sections if s["flags"] & SHF_TLS]
    tls += [s["name"] for s in elf.symbols if s["type"] == STT_TLS]
    print(f"==> TLS sections/symbols: {len(tls)}")
    if tls:
        bad(f"thread-local storage: {' '.join(tls)}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("amd64", "aarch64"):
        raise SystemExit("usage: check-ko.py amd64|aarch64 FILE.ko")
    arch, path = sys.argv[1], sys.argv[2]
    elf = Elf(path)
    print(f"==> {path}: {os.path.getsize(path)} bytes")
    check_header(elf, arch)
    check_metadata(elf)
    check_sysctls(elf)
    check_sdt(elf)
    check_undefined(elf, arch)
    check_code(elf, arch, path)
    if problems:
        print(f"check-ko.py: {len(problems)} problem(s) in {path}", file=sys.stderr)
        sys.exit(1)
    print(f"{arch} module OK")


main()
