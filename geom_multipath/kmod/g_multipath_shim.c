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
 * Rust crate geom_multipath_sysctl, sysctl/src/lib.rs), in its order, with its
 * leaf, type and description; arg2 is the knob (KPI_KNOB_*). The values, their
 * defaults and their ranges live on the Rust side. A test of the glue crate
 * keeps these lines and the table in step.
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
SYSCTL_PROC(_kern_geom_multipath, OID_AUTO, io_timeout,
    CTLTYPE_UINT | CTLFLAG_RW | CTLFLAG_MPSAFE, NULL, KPI_KNOB_IO_TIMEOUT,
    g_multipath_sysctl_knob, "IU",
    "Seconds a path may take to answer a request before it is failed (0: wait)");

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

static void
g_multipath_init(struct g_class *mp __unused)
{

	gmp_kpi_init();
	gmp_rs_init();
}

static void
g_multipath_fini(struct g_class *mp __unused)
{

	gmp_kpi_cancel_events();
	gmp_rs_fini();
	gmp_kpi_fini();
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

void
g_multipath_start(struct bio *bp)
{

	gmp_rs_start(bp);
}

void
g_multipath_done(struct bio *bp)
{

	gmp_rs_done(bp);
}

void
g_multipath_orphan(struct g_consumer *cp)
{

	g_topology_assert();
	gmp_rs_orphan(cp);
}

/* Taste's private consumer lives only inside kpi_g_taste_read(), which detaches it. */
void
g_multipath_taste_orphan(struct g_consumer *cp __unused)
{
}

int
g_multipath_access(struct g_provider *pp, int dr, int dw, int de)
{

	g_topology_assert();
	return (gmp_rs_access(pp, dr, dw, de));
}

void
g_multipath_resize(struct g_consumer *cp)
{

	g_topology_assert();
	gmp_rs_resize(cp);
}

void
g_multipath_dumpconf(struct sbuf *sb, const char *indent, struct g_geom *gp,
    struct g_consumer *cp, struct g_provider *pp)
{

	gmp_rs_dumpconf(sb, indent, strlen(indent), gp, cp, pp);
}

DECLARE_GEOM_CLASS(g_multipath_class, g_multipath);
MODULE_VERSION(geom_multipath, 0);
