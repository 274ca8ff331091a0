# `make install` on Linux: the tools, the manual pages, the systemd unit and the JSON Schema
# of `--libxo json` (gmultipath(8)), under DESTDIR/PREFIX as packagers expect.
#   make install                    # /usr/sbin, /usr/share/man/man8, /lib/systemd/system
#   make install DESTDIR=/tmp/pkg   # staged, for a package
# Then: systemctl daemon-reload && systemctl enable --now gmultipathd
PREFIX ?= /usr
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= /lib/systemd/system
SHAREDIR ?= $(PREFIX)/share/gmultipath
PROGRAMS = gmultipath gnop gmultipathd mpsysctl

.PHONY: build install

build:
	cargo build --release --bins

install: build
	for p in $(PROGRAMS); do install -D -m 0755 target/release/$$p $(DESTDIR)$(SBINDIR)/$$p; done
	for m in man/*.[48]; do install -D -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}; done
	sed "s#/usr/sbin/gmultipathd#$(SBINDIR)/gmultipathd#" dist/linux/gmultipathd.service > target/gmultipathd.service
	install -D -m 0644 target/gmultipathd.service $(DESTDIR)$(UNITDIR)/gmultipathd.service
	install -D -m 0644 gmultipath/schema/gmultipath-stats.schema.json $(DESTDIR)$(SHAREDIR)/gmultipath-stats.schema.json
