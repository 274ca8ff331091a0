/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * g_multipath_shim.c: the MULTIPATH GEOM class of geom_multipath.ko.
 *
 * The class lives in Rust (geom_multipath, driven by the glue crate
 * geom_multipath_kmod). This file is only what GEOM needs to see: the g_class
 * with its methods, the module and its SYSCTLs and SDT probes. Each method
 * converts nothing, decides nothing: it makes one gmp_rs_* call (kpi.h) and
 * returns what comes back.
 */

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/bio.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/module.h>
#include <sys/mutex.h>
#include <sys/sbuf.h>
#include <sys/sdt.h>
#include <sys/sysctl.h>

#include <geom/geom.h>

#include "kpi.h"
#include "g_multipath_kmod.h"

FEATURE(geom_multipath, "GEOM multipath support");

/*
 * kern.geom.multipath: one SYSCTL_PROC per row of the tunables table (the
 * Rust crate geom_multipath_sysctl, sysctl/src/lib.rs) that the module
 * enforces, in its order, with its leaf, type and description; arg2 is the
 * knob (KPI_KNOB_*). Rows marked host_only (io_timeout) are not registered:
 * GEOM cannot take back a request it has sent down, and a knob that does
 * nothing would be a trap. The values, their defaults and their ranges live on
 * the Rust side. A test of the glue crate keeps these lines and the table in
 * step; check-ko.sh checks the linked module's sysctl set against the table.
 */
SYSCTL_DECL(_kern_geom);
static SYSCTL_NODE(_kern_geom, OID_AUTO, multipath,
    CTLFLAG_RW | CTLFLAG_MPSAFE, 0,
    "GEOM_MULTIPATH tunables");

static int
g_multipath_sysctl_knob(SYSCTL_HANDLER_ARGS)
{
	u_int value;
	int error;

	value = gmp_rs_knob_get((uint32_t)arg2);
	error = sysctl_handle_int(oidp, &value, 0, req);
	if (error != 0 || req->newptr == NULL)
		return (error);
	return (gmp_rs_knob_set((uint32_t)arg2, value));
}

SYSCTL_PROC(_kern_geom_multipath, OID_AUTO, debug,
    CTLTYPE_UINT | CTLFLAG_RW | CTLFLAG_MPSAFE, NULL, KPI_KNOB_DEBUG,
    g_multipath_sysctl_knob, "IU",
    "Debug level");
SYSCTL_PROC(_kern_geom_multipath, OID_AUTO, exclusive,
    CTLTYPE_UINT | CTLFLAG_RW | CTLFLAG_MPSAFE, NULL, KPI_KNOB_EXCLUSIVE,
    g_multipath_sysctl_knob, "IU",
    "Exclusively open providers");

/*
 * The "geom" SDT provider is defined here, not only declared: whether a
 * kernel defines sdt_provider_geom varies by branch and by kernel options, and
 * an undefined symbol would make kldload fail. The SDT framework merges
 * providers of the same name (sdt_create_provider() takes a reference on an
 * existing one), and kmod.mk makes the module's symbols local, so this
 * definition does not clash with a kernel that has its own.
 */
SDT_PROVIDER_DEFINE(geom);
SDT_PROBE_DEFINE2(geom, multipath, config, restore, "char*", "char*");
SDT_PROBE_DEFINE2(geom, multipath, config, remove, "char*", "char*");
SDT_PROBE_DEFINE2(geom, multipath, config, disconnect, "char*", "char*");
SDT_PROBE_DEFINE3(geom, multipath, config, fail, "char*", "char*", "int");
SDT_PROBE_DEFINE2(geom, multipath, config, taste, "char*", "char*");
SDT_PROBE_DEFINE2(geom, multipath, io, restart, "struct bio*", "struct bio*");

static g_taste_t g_multipath_taste;
static g_ctl_req_t g_multipath_config;
static g_ctl_destroy_geom_t g_multipath_destroy_geom;
static g_init_t g_multipath_init;
static g_fini_t g_multipath_fini;
static g_start_t g_multipath_start;
static g_orphan_t g_multipath_orphan;
static g_orphan_t g_multipath_taste_orphan;
static g_access_t g_multipath_access;
static g_dumpconf_t g_multipath_dumpconf;
static g_resize_t g_multipath_resize;
static void g_multipath_done(struct bio *bp);

struct g_class g_multipath_class = {
	.name		= "MULTIPATH",
	.version	= G_VERSION,
	.ctlreq		= g_multipath_config,
	.taste		= g_multipath_taste,
	.destroy_geom	= g_multipath_destroy_geom,
	.init		= g_multipath_init,
	.fini		= g_multipath_fini,
};

/* ----- class methods ------------------------------------------------------ */

/* The g_mp_kt process and the gate exist from MOD_LOAD on (see the end). */
static void
g_multipath_init(struct g_class *mp __unused)
{

	gmp_rs_init();
}

/* Stops g_mp_kt (drained), drops the class, then cancels its events. */
static void
g_multipath_fini(struct g_class *mp __unused)
{

	gmp_rs_fini();
}

static struct g_geom *
g_multipath_taste(struct g_class *mp __unused, struct g_provider *pp,
    int flags __unused)
{

	g_topology_assert();
	return (gmp_rs_taste(pp));
}

static void
g_multipath_config(struct gctl_req *req, struct g_class *mp __unused,
    const char *verb __unused)
{

	g_topology_assert();
	gmp_rs_ctlreq(req);
}

static int
g_multipath_destroy_geom(struct gctl_req *req __unused,
    struct g_class *mp __unused, struct g_geom *gp)
{

	g_topology_assert();
	return (gmp_rs_destroy_geom(gp));
}

/* ----- geom methods (set on every MULTIPATH geom by kpi_g_new_geom) -------- */

static void
g_multipath_start(struct bio *bp)
{

	gmp_rs_start(bp);
}

static void
g_multipath_done(struct bio *bp)
{

	gmp_rs_done(bp);
}

static void
g_multipath_orphan(struct g_consumer *cp)
{

	g_topology_assert();
	gmp_rs_orphan(cp);
}

/* Taste's private consumer lives only inside kpi_g_taste_read(), which detaches it. */
static void
g_multipath_taste_orphan(struct g_consumer *cp __unused)
{
}

static int
g_multipath_access(struct g_provider *pp, int dr, int dw, int de)
{

	g_topology_assert();
	return (gmp_rs_access(pp, dr, dw, de));
}

static void
g_multipath_resize(struct g_consumer *cp)
{

	g_topology_assert();
	gmp_rs_resize(cp);
}

static void
g_multipath_dumpconf(struct sbuf *sb, const char *indent, struct g_geom *gp,
    struct g_consumer *cp, struct g_provider *pp)
{

	gmp_rs_dumpconf(sb, indent, strlen(indent), gp, cp, pp);
}

const struct gmp_geom_methods gmp_geom_methods = {
	.start		= g_multipath_start,
	.orphan		= g_multipath_orphan,
	.access		= g_multipath_access,
	.dumpconf	= g_multipath_dumpconf,
	.resize		= g_multipath_resize,
	.taste_orphan	= g_multipath_taste_orphan,
	.done		= g_multipath_done,
};

/* ----- the module ------------------------------------------------------------ */

/*
 * DECLARE_GEOM_CLASS with our own event handler around g_modevent(): the
 * g_mp_kt process is created here, where a failure (kproc_create(9) at
 * maxproc) fails the load, since g_class.init cannot fail. It is stopped by
 * the class's fini; what is left (the gate) goes once the unload succeeded,
 * or when the load fails after gmp_rs_load().
 */
static int
g_multipath_modevent(module_t mod, int type, void *data)
{
	int error;

	switch (type) {
	case MOD_LOAD:
		error = gmp_rs_load();
		if (error != 0)
			return (error);
		error = g_modevent(mod, type, data);
		if (error != 0)
			gmp_rs_unload();
		return (error);
	case MOD_UNLOAD:
		error = g_modevent(mod, type, data);
		if (error == 0)
			gmp_rs_unload();
		return (error);
	default:
		return (g_modevent(mod, type, data));
	}
}

static moduledata_t g_multipath_mod = {
	"g_multipath",
	g_multipath_modevent,
	&g_multipath_class
};
DECLARE_MODULE(g_multipath, g_multipath_mod, SI_SUB_DRIVERS, SI_ORDER_THIRD);
MODULE_VERSION(geom_multipath, 0);
