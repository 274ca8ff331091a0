/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * kpi_freebsd.c: kpi.h over the FreeBSD kernel.
 *
 * Every function is a plain translation onto one kernel facility; none
 * decides anything about multipath. Beyond the one-liners, three pieces of
 * machinery live here:
 *
 *  - the class gate, which gives the Rust class one owner at a time: control
 *    methods wait for it (kpi_gate_enter), the data path only tries it
 *    (kpi_gate_try_enter) and hands its request to g_mp_kt when it is busy;
 *  - g_mp_kt, the kernel process that serves the class's two queues (requests
 *    to route, completions to judge), as FreeBSD's g_multipath does for its
 *    failed completions; created by the module's MOD_LOAD handler (where a
 *    failure can fail the load) and stopped, after it has drained its queues,
 *    by the class's fini method;
 *  - the GEOM event that runs the class's deferred work (gmp_rs_event), posted
 *    with a reference that is cancelled once the class is gone.
 */

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/bio.h>
#include <sys/kernel.h>
#include <sys/kthread.h>
#include <sys/libkern.h>
#include <sys/limits.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mutex.h>
#include <sys/proc.h>
#include <sys/sbuf.h>
#include <sys/sdt.h>
#include <sys/sx.h>

#include <geom/geom.h>
#include <geom/geom_ctl.h>

#include "kpi.h"
#include "g_multipath_kmod.h"

/* Our constants are the kernel's: the build fails on any drift. */
_Static_assert(KPI_BIO_READ == BIO_READ, "KPI_BIO_READ");
_Static_assert(KPI_BIO_WRITE == BIO_WRITE, "KPI_BIO_WRITE");
_Static_assert(KPI_BIO_DELETE == BIO_DELETE, "KPI_BIO_DELETE");
_Static_assert(KPI_BIO_GETATTR == BIO_GETATTR, "KPI_BIO_GETATTR");
_Static_assert(KPI_BIO_FLUSH == BIO_FLUSH, "KPI_BIO_FLUSH");
_Static_assert(KPI_EPERM == EPERM, "KPI_EPERM");
_Static_assert(KPI_EIO == EIO, "KPI_EIO");
_Static_assert(KPI_ENXIO == ENXIO, "KPI_ENXIO");
_Static_assert(KPI_EDEADLK == EDEADLK, "KPI_EDEADLK");
_Static_assert(KPI_ENOMEM == ENOMEM, "KPI_ENOMEM");
_Static_assert(KPI_EBUSY == EBUSY, "KPI_EBUSY");
_Static_assert(KPI_EEXIST == EEXIST, "KPI_EEXIST");
_Static_assert(KPI_EINVAL == EINVAL, "KPI_EINVAL");
_Static_assert(KPI_M_NOWAIT == M_NOWAIT, "KPI_M_NOWAIT");
_Static_assert(KPI_M_WAITOK == M_WAITOK, "KPI_M_WAITOK");
_Static_assert(KPI_M_ZERO == M_ZERO, "KPI_M_ZERO");
_Static_assert(KPI_GCTL_PARAM_RD == GCTL_PARAM_RD, "KPI_GCTL_PARAM_RD");
_Static_assert(KPI_GCTL_PARAM_WR == GCTL_PARAM_WR, "KPI_GCTL_PARAM_WR");
_Static_assert(KPI_GCTL_PARAM_ASCII == GCTL_PARAM_ASCII, "KPI_GCTL_PARAM_ASCII");
_Static_assert(sizeof(off_t) == sizeof(uint64_t), "off_t");

/* Room for a provider or geom name copied out of a (pointer, length) string. */
#define	GMP_NAMELEN	256

static MALLOC_DEFINE(M_GMULTIPATH, "gmultipath", "GEOM MULTIPATH class (Rust)");

/*
 * The precision for printing `len` bytes with "%.*s": an int, so a length
 * above INT_MAX would become a negative precision (print up to a NUL the
 * Rust side never wrote). Clamped; the Rust side clamps too.
 */
static int
gmp_prec(size_t len)
{

	return (len > INT_MAX ? INT_MAX : (int)len);
}

/* (ptr, len) into a NUL-terminated buffer of `size` bytes; false if it does not fit. */
static bool
gmp_cstr(char *dst, size_t size, const char *src, size_t len)
{

	if (len >= size)
		return (false);
	memcpy(dst, src, len);
	dst[len] = '\0';
	return (true);
}

/* ----- memory -------------------------------------------------------------- */

/* malloc(9) aligns every block to at least this much. */
#define	GMP_MALLOC_ALIGN	sizeof(void *)

static int
gmp_mflags(int flags)
{

	return (((flags & KPI_M_NOWAIT) != 0 ? M_NOWAIT : M_WAITOK) |
	    ((flags & KPI_M_ZERO) != 0 ? M_ZERO : 0));
}

void *
kpi_malloc(size_t size, size_t align, int flags)
{
	void *raw;
	uintptr_t p;

	KASSERT(powerof2(align), ("kpi_malloc: alignment %zu", align));
	if (align <= GMP_MALLOC_ALIGN)
		return (malloc(size, M_GMULTIPATH, gmp_mflags(flags)));
	/* Over-allocate, align, and keep the block's start just below. */
	raw = malloc(size + align + sizeof(void *), M_GMULTIPATH,
	    gmp_mflags(flags));
	if (raw == NULL)
		return (NULL);
	p = roundup2((uintptr_t)raw + sizeof(void *), align);
	((void **)p)[-1] = raw;
	return ((void *)p);
}

void
kpi_free(void *ptr, size_t size __unused, size_t align)
{

	if (ptr == NULL)
		return;
	if (align <= GMP_MALLOC_ALIGN)
		free(ptr, M_GMULTIPATH);
	else
		free(((void **)ptr)[-1], M_GMULTIPATH);
}

static struct mtx gmp_kt_mtx;
static struct mtx gmp_route_mtx;	/* the data path's short lock, below */

/*
 * Whether malloc(9) may be asked to sleep here: not inside a
 * THREAD_NO_SLEEPING section (g_down, g_up, the data path's hold of the
 * gate), not in a critical section, and not while this thread holds the
 * module's own mutexes (gmp_kt_mtx, gmp_route_mtx: the only ones the
 * module's code could run under). A
 * WITNESS kernel also checks for any other non-sleepable lock held, and says
 * which (an allocation that strays under one then fails instead of sleeping).
 */
bool
kpi_can_sleep(void)
{

	if (!THREAD_CAN_SLEEP() || curthread->td_critnest != 0 ||
	    mtx_owned(&gmp_kt_mtx) || mtx_owned(&gmp_route_mtx))
		return (false);
#ifdef WITNESS
	if (witness_warn(WARN_GIANTOK | WARN_SLEEPOK, NULL,
	    "geom_multipath: allocation") != 0)
		return (false);
#endif
	return (true);
}

/* ----- console, panic, randomness ------------------------------------------------- */

void
kpi_log(enum kpi_log_level level __unused, const char *msg, size_t len)
{

	printf("%.*s\n", gmp_prec(len), msg);
}

void
kpi_panic(const char *msg, size_t len)
{

	panic("%.*s", gmp_prec(len), msg);
}

uint32_t
kpi_random(void)
{

	return ((uint32_t)random());
}

/* ----- the class gate ------------------------------------------------------------- */

/*
 * The gate is an sx lock, so WITNESS sees it and checks its order: the
 * topology lock (when held), then the gate, then gmp_kt_mtx. A control method
 * takes it with the topology lock held and keeps the topology lock for as long
 * as it holds the gate (label I/O included), so no holder of the gate ever
 * waits for the topology lock; g_mp_kt takes it without the topology lock and
 * never needs that. The data path only tries it.
 */
static struct sx gmp_gate;

int
kpi_gate_enter(void)
{

	if (sx_xlocked(&gmp_gate))
		return (EDEADLK);
	sx_xlock(&gmp_gate);
	return (0);
}

void
kpi_gate_exit(void)
{

	sx_xunlock(&gmp_gate);
}

bool
kpi_gate_try_enter(void)
{

	if (!sx_try_xlock(&gmp_gate))
		return (false);
	THREAD_NO_SLEEPING();
	return (true);
}

void
kpi_gate_try_exit(void)
{

	THREAD_SLEEPING_OK();
	sx_xunlock(&gmp_gate);
}

/* ----- the route mutex ----------------------------------------------------------- */

/*
 * The data path's short lock: the direct routes and their counts of requests
 * in flight. A leaf: taken after the topology lock and the gate when those are
 * held, nothing is taken under it, and its holder neither sleeps nor
 * allocates (kpi_can_sleep says no while it is owned). Control methods wait
 * for a route to drain with msleep(9) on it; the wake-up comes from g_up.
 */
static int gmp_route_chan;

void
kpi_route_lock(void)
{

	mtx_lock(&gmp_route_mtx);
}

void
kpi_route_unlock(void)
{

	mtx_unlock(&gmp_route_mtx);
}

void
kpi_route_wait(void)
{

	msleep(&gmp_route_chan, &gmp_route_mtx, PRIBIO, "gmp:drain", 0);
}

void
kpi_route_wakeup(void)
{

	wakeup(&gmp_route_chan);
}

/* ----- g_mp_kt and the class's GEOM events ------------------------------------------ */

static struct bio_queue_head gmp_kt_start;	/* KPI_WORK_START */
static struct bio_queue_head gmp_kt_done;	/* KPI_WORK_DONE */
/* Requests queued to gmp_kt_start or being routed by g_mp_kt (gmp_kt_mtx). */
static u_int gmp_kt_starts;
static enum { GMP_KT_NIL, GMP_KT_RUN, GMP_KT_DIE } gmp_kt_state;
static struct proc *gmp_kt_proc;
static bool gmp_kpi_ready;	/* the mutexes exist (kpi_setup .. kpi_teardown) */
static int gmp_event_ref;	/* the reference every class event carries */

/*
 * g_mp_kt: serves completions first, then requests, in FIFO order; on
 * GMP_KT_DIE it first drains both queues. Its last act in this module's text
 * is the call of kproc_exit(9), whose wakeup(p) is what kpi_worker_stop()
 * waits for.
 */
static void
g_multipath_kt(void *arg __unused)
{
	struct bio *bp;

	mtx_lock(&gmp_kt_mtx);
	for (;;) {
		if ((bp = bioq_takefirst(&gmp_kt_done)) != NULL) {
			mtx_unlock(&gmp_kt_mtx);
			gmp_rs_work_done(bp);
			mtx_lock(&gmp_kt_mtx);
		} else if ((bp = bioq_takefirst(&gmp_kt_start)) != NULL) {
			mtx_unlock(&gmp_kt_mtx);
			gmp_rs_work_start(bp);
			mtx_lock(&gmp_kt_mtx);
			gmp_kt_starts--;
		} else if (gmp_kt_state == GMP_KT_DIE)
			break;
		else
			msleep(&gmp_kt_state, &gmp_kt_mtx, PRIBIO, "gkt:wait",
			    0);
	}
	gmp_kt_state = GMP_KT_NIL;
	mtx_unlock(&gmp_kt_mtx);
	kproc_exit(0);
}

void
kpi_worker_enqueue(struct bio *bp, enum kpi_work kind)
{

	mtx_lock(&gmp_kt_mtx);
	KASSERT(gmp_kt_state != GMP_KT_NIL,
	    ("kpi_worker_enqueue: g_mp_kt is gone"));
	if (kind == KPI_WORK_START) {
		bioq_insert_tail(&gmp_kt_start, bp);
		gmp_kt_starts++;
	} else
		bioq_insert_tail(&gmp_kt_done, bp);
	mtx_unlock(&gmp_kt_mtx);
	wakeup(&gmp_kt_state);
}

bool
kpi_worker_starts_pending(void)
{
	bool pending;

	mtx_lock(&gmp_kt_mtx);
	pending = gmp_kt_starts != 0;
	mtx_unlock(&gmp_kt_mtx);
	return (pending);
}

static void
g_multipath_event(void *arg __unused, int flag)
{

	gmp_rs_event(flag == EV_CANCEL);
}

int
kpi_post_event(int flags)
{

	return (g_post_event(g_multipath_event, NULL,
	    (flags & KPI_M_NOWAIT) != 0 ? M_NOWAIT : M_WAITOK, &gmp_event_ref,
	    NULL));
}

int
kpi_setup(void)
{
	int error;

	KASSERT(!gmp_kpi_ready, ("kpi_setup: twice"));
	sx_init(&gmp_gate, "gmultipath gate");
	mtx_init(&gmp_kt_mtx, "gmtbq", NULL, MTX_DEF);
	mtx_init(&gmp_route_mtx, "gmultipath route", NULL, MTX_DEF);
	bioq_init(&gmp_kt_start);
	bioq_init(&gmp_kt_done);
	gmp_kt_starts = 0;
	gmp_kt_state = GMP_KT_RUN;
	error = kproc_create(g_multipath_kt, NULL, &gmp_kt_proc, 0, 0,
	    "g_mp_kt");
	if (error != 0) {
		gmp_kt_state = GMP_KT_NIL;
		gmp_kt_proc = NULL;
		mtx_destroy(&gmp_route_mtx);
		mtx_destroy(&gmp_kt_mtx);
		sx_destroy(&gmp_gate);
		return (error);
	}
	gmp_kpi_ready = true;
	return (0);
}

void
kpi_worker_stop(void)
{

	if (!gmp_kpi_ready)
		return;
	mtx_lock(&gmp_kt_mtx);
	if (gmp_kt_state == GMP_KT_RUN) {
		gmp_kt_state = GMP_KT_DIE;
		wakeup(&gmp_kt_state);
		/*
		 * g_mp_kt can only set NIL once this sleep has released the
		 * mutex, and then ends in kproc_exit(9), which wakes us
		 * through its proc.
		 */
		while (gmp_kt_state != GMP_KT_NIL)
			msleep(gmp_kt_proc, &gmp_kt_mtx, PRIBIO, "gmp:fini",
			    0);
	}
	mtx_unlock(&gmp_kt_mtx);
}

void
kpi_cancel_events(void)
{

	g_cancel_event(&gmp_event_ref);
}

void
kpi_teardown(void)
{

	if (!gmp_kpi_ready)
		return;
	kpi_worker_stop();
	gmp_kpi_ready = false;
	mtx_destroy(&gmp_route_mtx);
	mtx_destroy(&gmp_kt_mtx);
	sx_destroy(&gmp_gate);
}

/* ----- DTrace ------------------------------------------------------------------------ */

void
kpi_sdt_config(enum kpi_sdt_config probe, const char *a, size_t alen,
    const char *b, size_t blen, int error)
{
	char sa[GMP_NAMELEN], sb[GMP_NAMELEN];

	if (!SDT_PROBES_ENABLED())
		return;
	if (!gmp_cstr(sa, sizeof(sa), a, alen) ||
	    !gmp_cstr(sb, sizeof(sb), b, blen))
		return;
	switch (probe) {
	case KPI_SDT_RESTORE:
		SDT_PROBE2(geom, multipath, config, restore, sa, sb);
		break;
	case KPI_SDT_REMOVE:
		SDT_PROBE2(geom, multipath, config, remove, sa, sb);
		break;
	case KPI_SDT_DISCONNECT:
		SDT_PROBE2(geom, multipath, config, disconnect, sa, sb);
		break;
	case KPI_SDT_FAIL:
		SDT_PROBE3(geom, multipath, config, fail, sa, sb, error);
		break;
	case KPI_SDT_TASTE:
		SDT_PROBE2(geom, multipath, config, taste, sa, sb);
		break;
	}
}

void
kpi_sdt_restart(struct bio *child, struct bio *parent)
{

	SDT_PROBE2(geom, multipath, io, restart, child, parent);
}

/* ----- bios -------------------------------------------------------------------------- */

uint16_t
kpi_bio_cmd(const struct bio *bp)
{

	return (bp->bio_cmd);
}

uint64_t
kpi_bio_offset(const struct bio *bp)
{

	return ((uint64_t)bp->bio_offset);
}

uint64_t
kpi_bio_length(const struct bio *bp)
{

	return ((uint64_t)bp->bio_length);
}

int
kpi_bio_error(const struct bio *bp)
{

	return (bp->bio_error);
}

size_t
kpi_bio_attribute(const struct bio *bp, const char **attr)
{

	*attr = bp->bio_attribute;
	return (bp->bio_attribute != NULL ? strlen(bp->bio_attribute) : 0);
}

struct bio *
kpi_bio_parent(const struct bio *bp)
{

	return (bp->bio_parent);
}

struct g_geom *
kpi_bio_geom(const struct bio *bp)
{

	return (bp->bio_to != NULL ? bp->bio_to->geom : NULL);
}

void *
kpi_bio_driver1(const struct bio *bp)
{

	return (bp->bio_driver1);
}

void
kpi_bio_set_driver1(struct bio *bp, void *state)
{

	bp->bio_driver1 = state;
}

struct bio *
kpi_bio_clone(struct bio *bp)
{
	struct bio *cbp;

	cbp = g_clone_bio(bp);
	if (cbp != NULL)
		cbp->bio_done = gmp_geom_methods.done;
	return (cbp);
}

void
kpi_bio_request(struct bio *cbp, struct g_consumer *cp)
{

	g_io_request(cbp, cp);
}

void
kpi_bio_retire(struct bio *cbp)
{

	cbp->bio_parent->bio_inbed++;
	g_destroy_bio(cbp);
}

void
kpi_bio_complete(struct bio *cbp, int error)
{
	struct bio *pbp;

	pbp = cbp->bio_parent;
	pbp->bio_completed += cbp->bio_completed;
	pbp->bio_inbed++;
	g_destroy_bio(cbp);
	g_io_deliver(pbp, error);
}

void
kpi_bio_deliver(struct bio *bp, int error)
{

	g_io_deliver(bp, error);
}

void
kpi_bio_attr_append(struct bio *bp, const char *s, size_t len)
{
	char suffix[GMP_NAMELEN];

	if (bp->bio_data == NULL || bp->bio_length <= 0 ||
	    !gmp_cstr(suffix, sizeof(suffix), s, len))
		return;
	strlcat(bp->bio_data, suffix, (size_t)bp->bio_length);
}

/* ----- consumers ------------------------------------------------------------------------ */

struct g_provider *
kpi_cp_provider(const struct g_consumer *cp)
{

	return (cp->provider);
}

int
kpi_cp_access(struct g_consumer *cp, int dr, int dw, int de)
{

	g_topology_assert();
	return (g_access(cp, dr, dw, de));
}

int
kpi_cp_read(struct g_consumer *cp, uint64_t offset, void *buf, size_t len)
{
	void *data;
	int error;

	/*
	 * Under the gate, and with the topology lock kept (as gpart's commit
	 * does), so that no holder of the gate ever waits for the topology lock.
	 */
	g_topology_assert();
	data = g_read_data(cp, (off_t)offset, (off_t)len, &error);
	if (data == NULL)
		return (error != 0 ? error : EIO);
	memcpy(buf, data, len);
	g_free(data);
	return (0);
}

int
kpi_cp_write(struct g_consumer *cp, uint64_t offset, const void *buf,
    size_t len)
{
	int error;

	/* As in kpi_cp_read(): the topology lock is kept. */
	g_topology_assert();
	error = g_write_data(cp, (off_t)offset, __DECONST(void *, buf),
	    (off_t)len);
	return (error);
}

void
kpi_cp_detach(struct g_consumer *cp)
{

	g_topology_assert();
	if (cp->provider != NULL)
		g_detach(cp);
	g_destroy_consumer(cp);
}

/* ----- providers -------------------------------------------------------------------------- */

const char *
kpi_pp_name(const struct g_provider *pp, size_t *len)
{

	*len = strlen(pp->name);
	return (pp->name);
}

uint64_t
kpi_pp_mediasize(const struct g_provider *pp)
{

	return ((uint64_t)pp->mediasize);
}

uint32_t
kpi_pp_sectorsize(const struct g_provider *pp)
{

	return (pp->sectorsize);
}

uint64_t
kpi_pp_stripesize(const struct g_provider *pp)
{

	return ((uint64_t)pp->stripesize);
}

uint64_t
kpi_pp_stripeoffset(const struct g_provider *pp)
{

	return ((uint64_t)pp->stripeoffset);
}

uint32_t
kpi_pp_rank(const struct g_provider *pp)
{

	return ((uint32_t)pp->geom->rank);
}

struct g_geom *
kpi_pp_geom(const struct g_provider *pp)
{

	return (pp->geom);
}

/* Deeper than any real stack of geoms; a deeper one is refused too. */
#define	GMP_STACK_MAX	32

static bool
gmp_on_class(const struct g_provider *pp, int depth)
{
	const struct g_consumer *cp;

	if (pp->geom->class == &g_multipath_class || depth == 0)
		return (true);
	LIST_FOREACH(cp, &pp->geom->consumer, consumer) {
		if (cp->provider != NULL &&
		    gmp_on_class(cp->provider, depth - 1))
			return (true);
	}
	return (false);
}

bool
kpi_pp_on_class(const struct g_provider *pp)
{

	g_topology_assert();
	return (gmp_on_class(pp, GMP_STACK_MAX));
}

struct g_provider *
kpi_pp_by_name(const char *name, size_t len)
{
	char buf[GMP_NAMELEN];

	if (!gmp_cstr(buf, sizeof(buf), name, len))
		return (NULL);
	return (g_provider_by_name(buf));
}

/* ----- geoms --------------------------------------------------------------------------------- */

struct g_geom *
kpi_g_new_geom(const char *name, size_t len, struct g_provider **ppp)
{
	struct g_geom *gp;
	struct g_provider *pp;

	g_topology_assert();
	gp = g_new_geomf(&g_multipath_class, "%.*s", gmp_prec(len), name);
	gp->start = gmp_geom_methods.start;
	gp->orphan = gmp_geom_methods.orphan;
	gp->access = gmp_geom_methods.access;
	gp->dumpconf = gmp_geom_methods.dumpconf;
	gp->resize = gmp_geom_methods.resize;
	pp = g_new_providerf(gp, "multipath/%.*s", gmp_prec(len), name);
	g_error_provider(pp, 0);
	*ppp = pp;
	return (gp);
}

void
kpi_g_set_geometry(struct g_provider *pp, uint64_t mediasize,
    uint32_t sectorsize)
{

	pp->mediasize = (off_t)mediasize;
	pp->sectorsize = sectorsize;
}

void
kpi_g_set_stripe(struct g_provider *pp, uint64_t stripesize,
    uint64_t stripeoffset)
{

	pp->stripesize = (off_t)stripesize;
	pp->stripeoffset = (off_t)stripeoffset;
}

void
kpi_g_resize(struct g_provider *pp, uint64_t mediasize)
{

	g_topology_assert();
	g_resize_provider(pp, (off_t)mediasize);
}

void
kpi_g_wither_provider(struct g_provider *pp, int error)
{

	g_topology_assert();
	g_wither_provider(pp, error);
}

void
kpi_g_wither_geom(struct g_geom *gp, int error)
{

	g_topology_assert();
	gp->softc = NULL;
	g_wither_geom(gp, error);
}

int
kpi_g_attach(struct g_geom *gp, struct g_provider *pp, struct g_consumer **cpp)
{
	struct g_consumer *cp;
	int error;

	g_topology_assert();
	cp = g_new_consumer(gp);
	error = g_attach(cp, pp);
	if (error != 0) {
		g_destroy_consumer(cp);
		return (error);
	}
	*cpp = cp;
	return (0);
}

int
kpi_g_taste_read(struct g_provider *pp, uint64_t offset, void *buf, size_t len)
{
	struct g_geom *gp;
	struct g_consumer *cp;
	void *data;
	int error;

	g_topology_assert();
	gp = g_new_geomf(&g_multipath_class, "multipath:taste");
	gp->orphan = gmp_geom_methods.taste_orphan;
	cp = g_new_consumer(gp);
	data = NULL;
	error = g_attach(cp, pp);
	if (error == 0) {
		error = g_access(cp, 1, 0, 0);
		if (error == 0) {
			/*
			 * Taste reads before it takes the gate (the read may
			 * open one of the class's own providers, whose access
			 * method takes the gate), so the topology lock can be
			 * dropped here as FreeBSD's taste does.
			 */
			KASSERT(!sx_xlocked(&gmp_gate),
			    ("kpi_g_taste_read under the gate"));
			g_topology_unlock();
			data = g_read_data(cp, (off_t)offset, (off_t)len,
			    &error);
			g_topology_lock();
			g_access(cp, -1, 0, 0);
		}
		g_detach(cp);
	}
	g_destroy_consumer(cp);
	g_destroy_geom(gp);
	if (data == NULL)
		return (error != 0 ? error : EIO);
	memcpy(buf, data, len);
	g_free(data);
	return (0);
}

/* ----- control requests ------------------------------------------------------------------------ */

uint32_t
kpi_gctl_nparams(const struct gctl_req *req)
{

	return (req->arg != NULL ? req->narg : 0);
}

int
kpi_gctl_param(const struct gctl_req *req, uint32_t i, const char **name,
    size_t *name_len, const void **value, size_t *value_len)
{
	const struct gctl_req_arg *ap;

	if (req->arg == NULL || i >= req->narg)
		return (-1);
	ap = &req->arg[i];
	*name = ap->name;
	*name_len = strlen(ap->name);
	*value = ap->kvalue;
	*value_len = ap->len > 0 ? (size_t)ap->len : 0;
	return (ap->flag &
	    (GCTL_PARAM_RD | GCTL_PARAM_WR | GCTL_PARAM_ASCII));
}

void
kpi_gctl_error(struct gctl_req *req, const char *msg, size_t len)
{

	gctl_error(req, "%.*s", gmp_prec(len), msg);
}

void
kpi_gctl_set_param(struct gctl_req *req, const char *name, size_t name_len,
    const void *value, size_t len)
{
	char param[GMP_NAMELEN];

	if (!gmp_cstr(param, sizeof(param), name, name_len))
		return;
	if (len > INT_MAX)
		return;
	gctl_set_param_err(req, param, value, (int)len);
}

/* ----- kern.geom.confxml ------------------------------------------------------------------------ */

void
kpi_sbuf_cat(struct sbuf *sb, const char *s, size_t len)
{

	sbuf_bcat(sb, s, len);
}
