/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * kpi.h: the narrow interface between the C shim of geom_multipath.ko and the
 * Rust class.
 *
 * Only incomplete kernel structure types and fixed-width integers cross it, so
 * that no kernel structure layout is ever compiled into the Rust side: the C
 * files are rebuilt against each branch's headers, the Rust side never changes.
 * Every constant is our own; kpi_freebsd.c checks each one against the
 * kernel's with a static assertion. Strings cross as (pointer, length) and are
 * not NUL-terminated unless a comment says so.
 *
 * Two directions:
 *  - kpi_*:     implemented in C (kpi_freebsd.c) over the kernel KPI, called
 *               by Rust;
 *  - gmp_rs_*:  implemented in Rust, called by the shim's g_class methods.
 *
 * bindgen reads this file and nothing else (regen-bindings.sh); its output,
 * src/bindings.rs, is committed.
 */

#ifndef _GEOM_MULTIPATH_KPI_H_
#define	_GEOM_MULTIPATH_KPI_H_

#ifdef _KERNEL
#include <sys/types.h>
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#endif

struct bio;
struct g_consumer;
struct g_geom;
struct g_provider;
struct gctl_req;
struct sbuf;

/* BIO commands (bio_cmd). */
#define	KPI_BIO_READ		1
#define	KPI_BIO_WRITE		2
#define	KPI_BIO_DELETE		3
#define	KPI_BIO_GETATTR		4
#define	KPI_BIO_FLUSH		5

/* Error numbers the class produces or recognises (FreeBSD's values). */
#define	KPI_EPERM		1
#define	KPI_EIO			5
#define	KPI_ENXIO		6
#define	KPI_EDEADLK		11
#define	KPI_ENOMEM		12
#define	KPI_EBUSY		16
#define	KPI_EEXIST		17
#define	KPI_EINVAL		22

/* malloc(9) flags. */
#define	KPI_M_NOWAIT		0x0001
#define	KPI_M_WAITOK		0x0002
#define	KPI_M_ZERO		0x0100

/* gctl parameter flags (struct gctl_req_arg.flag). */
#define	KPI_GCTL_PARAM_RD	1
#define	KPI_GCTL_PARAM_WR	2
#define	KPI_GCTL_PARAM_ASCII	4

/* kern.geom.multipath.* knobs: arg2 of their SYSCTL_PROC, the Rust table's order. */
#define	KPI_KNOB_DEBUG		0
#define	KPI_KNOB_EXCLUSIVE	1
#define	KPI_KNOB_IO_TIMEOUT	2
#define	KPI_KNOB_CHECK_INTERVAL	3
#define	KPI_KNOB_REINSTATE	4
#define	KPI_KNOB_FLAP_THRESHOLD	5
#define	KPI_KNOB_FLAP_WINDOW	6
#define	KPI_KNOB_FLAP_HOLD	7
#define	KPI_KNOB_QUEUE_TIMEOUT	8
#define	KPI_KNOB_QUEUE_MAX_REQUESTS	9
#define	KPI_KNOB_QUEUE_MAX_KBYTES	10
#define	KPI_KNOB_COUNT		11

/* How loud a console message is; the kernel prints every level with printf. */
enum kpi_log_level {
	KPI_LOG_DEBUG = 0,
	KPI_LOG_INFO = 1,
	KPI_LOG_WARNING = 2,
};

/* The geom:multipath:config:* SDT probes. */
enum kpi_sdt_config {
	KPI_SDT_RESTORE = 0,	/* (geom name, provider name) */
	KPI_SDT_REMOVE = 1,	/* (geom name, provider name) */
	KPI_SDT_DISCONNECT = 2,	/* (geom name, provider name) */
	KPI_SDT_FAIL = 3,	/* (geom name, provider name, errno) */
	KPI_SDT_TASTE = 4,	/* (label name, label uuid) */
};

/* The queues of the g_mp_kt kernel process. */
enum kpi_work {
	KPI_WORK_START = 0,	/* a request to route (the class was busy) */
	KPI_WORK_DONE = 1,	/* a completed attempt (EIO/ENXIO, or the class was busy) */
};

/* ----- memory --------------------------------------------------------------- */

/**
 * malloc(9) of `size` bytes aligned to `align` (a power of two) with
 * KPI_M_* `flags`; NULL only with KPI_M_NOWAIT.
 */
void	*kpi_malloc(size_t size, size_t align, int flags);
/** Frees what kpi_malloc returned, given the same size and alignment. */
void	 kpi_free(void *ptr, size_t size, size_t align);
/** Whether the current thread may sleep (no THREAD_NO_SLEEPING section). */
bool	 kpi_can_sleep(void);

/* ----- console, panic, randomness -------------------------------------------- */

/** printf(9) of one console line; the newline is added here. */
void	 kpi_log(enum kpi_log_level level, const char *msg, size_t len);
/** panic(9) with the message; never returns. */
void	 kpi_panic(const char *msg, size_t len) __attribute__((__noreturn__));
/** A random number, for taste's name-clash rename (random(9)). */
uint32_t kpi_random(void);

/* ----- the class gate: one owner of the Rust class at a time ----------------- */

/**
 * sx_xlock(9) of the class gate: sleeps until the class is free and takes
 * it. Returns KPI_EDEADLK, without taking it, if the calling thread already
 * owns it (a GEOM method re-entered from inside one of the class's own
 * topology calls).
 */
int	 kpi_gate_enter(void);
/** Gives back what kpi_gate_enter took and wakes the next waiter. */
void	 kpi_gate_exit(void);
/**
 * The data path's entry: sx_try_xlock(9) of the class gate, or false when a
 * control call owns it. While held, the thread may not sleep.
 */
bool	 kpi_gate_try_enter(void);
/** Gives back what kpi_gate_try_enter took. */
void	 kpi_gate_try_exit(void);

/* ----- the route mutex: the data path's short lock -------------------------- */

/**
 * mtx_lock(9) of the route mutex (MTX_DEF, created by kpi_setup): it guards
 * the direct routes the class publishes and the counts of requests sent on
 * them. Its holder never sleeps, allocates or calls out of the module; it is
 * taken last (after the topology lock and the gate, when those are held).
 */
void	 kpi_route_lock(void);
/** mtx_unlock(9) of the route mutex. */
void	 kpi_route_unlock(void);
/**
 * msleep(9) on the route mutex, which the caller holds: gives it up until
 * kpi_route_wakeup(), then takes it back. Control methods only (they may
 * sleep); what they wait for completes in g_up without the gate.
 */
void	 kpi_route_wait(void);
/** wakeup(9) of kpi_route_wait() sleepers; the caller holds the route mutex. */
void	 kpi_route_wakeup(void);

/* ----- module life ------------------------------------------------------------ */

/**
 * MOD_LOAD: creates the class gate and the g_mp_kt kernel process. Returns 0,
 * or kproc_create(9)'s errno with nothing left behind.
 */
int	 kpi_setup(void);
/**
 * Stops g_mp_kt once it has drained both its queues and waits until it has
 * left the module's code (kproc_exit(9)). Nothing if it is not running.
 */
void	 kpi_worker_stop(void);
/** g_cancel_event(9): every class event still pending runs gmp_rs_event(true) now. */
void	 kpi_cancel_events(void);
/** Undoes kpi_setup(), stopping g_mp_kt first if it still runs; nothing if not set up. */
void	 kpi_teardown(void);

/* ----- deferred work ---------------------------------------------------------- */

/**
 * g_post_event(9) of one call of gmp_rs_event() on the GEOM event thread, in
 * FIFO order with GEOM's own events. Returns 0 or an errno (KPI_M_NOWAIT).
 */
int	 kpi_post_event(int flags);
/** Queues `bp` to the g_mp_kt kernel process, which calls gmp_rs_work_*(). */
void	 kpi_worker_enqueue(struct bio *bp, enum kpi_work kind);
/**
 * Whether requests queued with KPI_WORK_START are waiting or being routed:
 * a new request then queues behind them instead of overtaking them.
 */
bool	 kpi_worker_starts_pending(void);

/* ----- DTrace ------------------------------------------------------------------ */

/** Fires geom:multipath:config:<probe>(a, b[, error]). */
void	 kpi_sdt_config(enum kpi_sdt_config probe, const char *a, size_t alen,
	    const char *b, size_t blen, int error);
/** Fires geom:multipath:io:restart(child, parent). */
void	 kpi_sdt_restart(struct bio *child, struct bio *parent);

/* ----- bios -------------------------------------------------------------------- */

/** bio_cmd. */
uint16_t kpi_bio_cmd(const struct bio *bp);
/** bio_offset. */
uint64_t kpi_bio_offset(const struct bio *bp);
/** bio_length. */
uint64_t kpi_bio_length(const struct bio *bp);
/** bio_error of a completed bio. */
int	 kpi_bio_error(const struct bio *bp);
/** bio_attribute of a BIO_GETATTR (NUL-terminated), its length; 0 if none. */
size_t	 kpi_bio_attribute(const struct bio *bp, const char **attr);
/** bio_parent of a clone. */
struct bio *kpi_bio_parent(const struct bio *bp);
/** The geom of the provider the request was sent to (bio_to->geom). */
struct g_geom *kpi_bio_geom(const struct bio *bp);
/** bio_driver1: the class's per-request state in a request to its provider. */
void	*kpi_bio_driver1(const struct bio *bp);
/** Sets bio_driver1. */
void	 kpi_bio_set_driver1(struct bio *bp, void *state);
/** g_clone_bio(9) with the class's completion method; NULL on ENOMEM. */
struct bio *kpi_bio_clone(struct bio *bp);
/** g_io_request(9) of a clone on a path. */
void	 kpi_bio_request(struct bio *cbp, struct g_consumer *cp);
/** A clone's attempt is over and forgotten: count it home, destroy it. */
void	 kpi_bio_retire(struct bio *cbp);
/**
 * A clone's attempt answers its parent: the parent takes the clone's
 * completed count, the clone is counted home and destroyed, and the parent is
 * delivered with `error` (g_io_deliver(9)).
 */
void	 kpi_bio_complete(struct bio *cbp, int error);
/** g_io_deliver(9) of a request that has no clone in flight. */
void	 kpi_bio_deliver(struct bio *bp, int error);
/** Appends to the NUL-terminated answer of a BIO_GETATTR, within bio_length. */
void	 kpi_bio_attr_append(struct bio *bp, const char *s, size_t len);

/* ----- consumers (paths) --------------------------------------------------------- */

/** The provider a consumer is attached to (NULL once detached). */
struct g_provider *kpi_cp_provider(const struct g_consumer *cp);
/** g_access(9). */
int	 kpi_cp_access(struct g_consumer *cp, int dr, int dw, int de);
/** g_read_data(9) of `len` bytes at `offset` into `buf`; the topology lock stays held. */
int	 kpi_cp_read(struct g_consumer *cp, uint64_t offset, void *buf, size_t len);
/** g_write_data(9) of `len` bytes at `offset`; the topology lock stays held. */
int	 kpi_cp_write(struct g_consumer *cp, uint64_t offset, const void *buf,
	    size_t len);
/** g_detach(9) and g_destroy_consumer(9). */
void	 kpi_cp_detach(struct g_consumer *cp);

/* ----- providers ------------------------------------------------------------------- */

/** The provider's name and its length. */
const char *kpi_pp_name(const struct g_provider *pp, size_t *len);
/** mediasize. */
uint64_t kpi_pp_mediasize(const struct g_provider *pp);
/** sectorsize. */
uint32_t kpi_pp_sectorsize(const struct g_provider *pp);
/** stripesize. */
uint64_t kpi_pp_stripesize(const struct g_provider *pp);
/** stripeoffset. */
uint64_t kpi_pp_stripeoffset(const struct g_provider *pp);
/** The rank of the provider's geom. */
uint32_t kpi_pp_rank(const struct g_provider *pp);
/** The provider's geom. */
struct g_geom *kpi_pp_geom(const struct g_provider *pp);
/**
 * Whether `pp` is a provider of this class or rests on one through other
 * classes (a gnop or a partition of a multipath provider, ...): as a path it
 * would send the class's own I/O through the class. Topology lock held.
 */
bool	 kpi_pp_on_class(const struct g_provider *pp);
/** g_provider_by_name(9); NULL if there is none. */
struct g_provider *kpi_pp_by_name(const char *name, size_t len);

/* ----- geoms -------------------------------------------------------------------------- */

/**
 * g_new_geomf(9) of a MULTIPATH geom `name` with the class's methods, and its
 * provider "multipath/<name>" (g_new_providerf(9), g_error_provider(pp, 0)),
 * returned through `ppp`.
 */
struct g_geom *kpi_g_new_geom(const char *name, size_t len,
	    struct g_provider **ppp);
/** Sets the provider's mediasize and sectorsize. */
void	 kpi_g_set_geometry(struct g_provider *pp, uint64_t mediasize,
	    uint32_t sectorsize);
/** Sets the provider's stripesize and stripeoffset. */
void	 kpi_g_set_stripe(struct g_provider *pp, uint64_t stripesize,
	    uint64_t stripeoffset);
/** g_resize_provider(9). */
void	 kpi_g_resize(struct g_provider *pp, uint64_t mediasize);
/** g_wither_provider(9). */
void	 kpi_g_wither_provider(struct g_provider *pp, int error);
/** g_wither_geom(9). */
void	 kpi_g_wither_geom(struct g_geom *gp, int error);
/** g_new_consumer(9) and g_attach(9); the consumer is returned through `cpp`. */
int	 kpi_g_attach(struct g_geom *gp, struct g_provider *pp,
	    struct g_consumer **cpp);
/**
 * Taste's private read: a temporary "multipath:taste" geom reads `len` bytes
 * at `offset` of `pp` (attach, g_access(1,0,0), g_read_data with the topology
 * lock dropped, undo). Never under the gate.
 */
int	 kpi_g_taste_read(struct g_provider *pp, uint64_t offset, void *buf,
	    size_t len);

/* ----- control requests (gctl) ------------------------------------------------------------- */

/** The number of parameters. */
uint32_t kpi_gctl_nparams(const struct gctl_req *req);
/**
 * Parameter `i`: its name (without the NUL), its value in kernel memory (NULL
 * if none) and its length. Returns its KPI_GCTL_PARAM_* flags, -1 if `i` is
 * out of range.
 */
int	 kpi_gctl_param(const struct gctl_req *req, uint32_t i,
	    const char **name, size_t *name_len, const void **value,
	    size_t *value_len);
/** gctl_error(9) with the text as it is (only the first error is kept). */
void	 kpi_gctl_error(struct gctl_req *req, const char *msg, size_t len);
/** gctl_set_param_err(9) of a writable parameter. */
void	 kpi_gctl_set_param(struct gctl_req *req, const char *name,
	    size_t name_len, const void *value, size_t len);

/* ----- kern.geom.confxml --------------------------------------------------------------------- */

/** sbuf_bcat(9). */
void	 kpi_sbuf_cat(struct sbuf *sb, const char *s, size_t len);

/* ===== implemented in Rust, called by the shim ================================================= */

/** MOD_LOAD, before g_modevent(): 0, or the errno that fails the load. */
int	 gmp_rs_load(void);
/** MOD_UNLOAD after a successful g_modevent(), or a load that failed after gmp_rs_load(). */
void	 gmp_rs_unload(void);
/** g_class init: the class comes to life. */
void	 gmp_rs_init(void);
/**
 * g_class fini: the class goes (GEOM has checked that no geom is left):
 * g_mp_kt is stopped and drained, the class dropped, its events cancelled.
 */
void	 gmp_rs_fini(void);
/** g_class taste. */
struct g_geom *gmp_rs_taste(struct g_provider *pp);
/** g_class ctlreq: every verb. */
void	 gmp_rs_ctlreq(struct gctl_req *req);
/** g_class destroy_geom (module unload): 0 once the geom withers. */
int	 gmp_rs_destroy_geom(struct g_geom *gp);
/** g_geom start (g_down). */
void	 gmp_rs_start(struct bio *bp);
/** bio_done of the class's clones (g_up). */
void	 gmp_rs_done(struct bio *bp);
/** g_mp_kt: a request queued with KPI_WORK_START. */
void	 gmp_rs_work_start(struct bio *bp);
/** g_mp_kt: a completed clone queued with KPI_WORK_DONE. */
void	 gmp_rs_work_done(struct bio *bp);
/** The g_post_event(9) callback of kpi_post_event(); `cancelled` on EV_CANCEL. */
void	 gmp_rs_event(bool cancelled);
/** g_geom orphan. */
void	 gmp_rs_orphan(struct g_consumer *cp);
/** g_geom access. */
int	 gmp_rs_access(struct g_provider *pp, int dr, int dw, int de);
/** g_geom resize. */
void	 gmp_rs_resize(struct g_consumer *cp);
/** g_geom dumpconf: exactly one of `cp`, `pp` or neither (the geom itself). */
void	 gmp_rs_dumpconf(struct sbuf *sb, const char *indent, size_t indent_len,
	    struct g_geom *gp, struct g_consumer *cp, struct g_provider *pp);
/** The value of knob `knob` (KPI_KNOB_*). */
uint32_t gmp_rs_knob_get(uint32_t knob);
/** Sets knob `knob`: 0, or KPI_EINVAL when out of range or unknown. */
int	 gmp_rs_knob_set(uint32_t knob, uint32_t value);

#endif /* !_GEOM_MULTIPATH_KPI_H_ */
