/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * g_multipath_kmod.h: what the two C files of geom_multipath.ko share and the
 * Rust side never sees (kpi.h is the Rust boundary; this is not).
 */

#ifndef _G_MULTIPATH_KMOD_H_
#define	_G_MULTIPATH_KMOD_H_

/* The class and the methods a MULTIPATH geom gets (g_multipath_shim.c). */
extern struct g_class g_multipath_class;
g_start_t	g_multipath_start;
g_orphan_t	g_multipath_orphan;
g_orphan_t	g_multipath_taste_orphan;
g_access_t	g_multipath_access;
g_dumpconf_t	g_multipath_dumpconf;
g_resize_t	g_multipath_resize;
void		g_multipath_done(struct bio *bp);

/* kpi_freebsd.c: the gate, the g_mp_kt process and the class's GEOM events. */
void		gmp_kpi_init(void);
void		gmp_kpi_cancel_events(void);
void		gmp_kpi_fini(void);

/* The SDT probes (defined in g_multipath_shim.c, fired in kpi_freebsd.c). */
SDT_PROVIDER_DECLARE(geom);
SDT_PROBE_DECLARE(geom, multipath, config, restore);
SDT_PROBE_DECLARE(geom, multipath, config, remove);
SDT_PROBE_DECLARE(geom, multipath, config, disconnect);
SDT_PROBE_DECLARE(geom, multipath, config, fail);
SDT_PROBE_DECLARE(geom, multipath, config, taste);
SDT_PROBE_DECLARE(geom, multipath, io, restart);

#endif /* !_G_MULTIPATH_KMOD_H_ */
