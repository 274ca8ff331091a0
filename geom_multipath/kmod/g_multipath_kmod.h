/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * g_multipath_kmod.h: what the two C files of geom_multipath.ko share and the
 * Rust side never sees (kpi.h is the Rust boundary; this is not).
 */

#ifndef _G_MULTIPATH_KMOD_H_
#define	_G_MULTIPATH_KMOD_H_

/*
 * The class, and the methods a MULTIPATH geom (and taste's private geom) gets:
 * the methods themselves are static in g_multipath_shim.c; kpi_freebsd.c sets
 * them from this table.
 */
extern struct g_class g_multipath_class;
struct gmp_geom_methods {
	g_start_t	*start;
	g_orphan_t	*orphan;
	g_access_t	*access;
	g_dumpconf_t	*dumpconf;
	g_resize_t	*resize;
	g_orphan_t	*taste_orphan;
	void		(*done)(struct bio *);
};
extern const struct gmp_geom_methods gmp_geom_methods;

/*
 * The SDT probes (defined in g_multipath_shim.c, fired in kpi_freebsd.c). The
 * shim defines the "geom" provider itself rather than relying on the kernel
 * to define sdt_provider_geom (see the shim).
 */
SDT_PROVIDER_DECLARE(geom);
SDT_PROBE_DECLARE(geom, multipath, config, restore);
SDT_PROBE_DECLARE(geom, multipath, config, remove);
SDT_PROBE_DECLARE(geom, multipath, config, disconnect);
SDT_PROBE_DECLARE(geom, multipath, config, fail);
SDT_PROBE_DECLARE(geom, multipath, config, taste);
SDT_PROBE_DECLARE(geom, multipath, io, restart);

#endif /* !_G_MULTIPATH_KMOD_H_ */
