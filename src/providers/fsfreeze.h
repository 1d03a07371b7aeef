/*
 * fsfreeze.h - FIFREEZE with a deadline that survives the freezer's death.
 *
 * A filesystem frozen with FIFREEZE stays frozen until someone issues
 * FITHAW: if the process that froze it is killed (SIGKILL, OOM), every
 * writer on that filesystem blocks forever.  amber's rule is that no
 * party's death may leave writes held (design.md section 3, CODING.md
 * "Deadlines"), so every freeze here is watched by a guard process:
 *
 *   amb_fsfreeze()  forks and execs amber-thaw-guard (setsid: its own
 *                   session, so a signal to the freezer's process group
 *                   does not reach it; oom_score_adj -1000).  The guard
 *                   holds a descriptor on the filesystem and one end of a
 *                   socket pair; it says it is ready, the freezer sends it
 *                   the deadline, issues FIFREEZE and tells it "frozen".
 *   amb_fsthaw()    asks the guard to thaw; the guard issues FITHAW,
 *                   answers and exits.
 *
 * The guard issues FITHAW by itself when
 *   - the freezer's end of the socket closes (the freezer died: the kernel
 *     closes its descriptors, whatever killed it), or
 *   - the deadline passes (it then tells the freezer, whose amb_fsthaw
 *     returns -ETIMEDOUT), or
 *   - it gets SIGTERM, SIGINT or SIGHUP (treated as a deadline reached now).
 * Only the guard thaws while it lives, so a thaw can never undo somebody
 * else's later freeze of the same filesystem.  If the guard itself is
 * killed, amb_fsthaw notices and thaws directly.  What nothing can cover:
 * the freezer and the guard killed together (e.g. systemd's SIGKILL of the
 * whole control group; a service unit should use KillMode=mixed), and a
 * process that inherited the freezer's socket end through fork without
 * exec (the socket is close-on-exec) keeping it open.
 *
 * Guard executable: $AMBER_THAW_GUARD if set, else the installed
 * amber-thaw-guard, else the one in the build tree.  If none can be
 * executed, the forked child runs the same guard loop itself (it only uses
 * async-signal-safe system calls), so a freeze is never unguarded.
 *
 * Wire format between freezer and guard (AF_UNIX SOCK_SEQPACKET, one
 * 16-byte message per packet):
 *   byte 0      type: 'R' guard ready; 'F' freezer about to freeze (value =
 *               deadline); 'f' frozen; 'A' freeze failed, exit without
 *               thawing; 'T' thaw now; 't' thawed (err = FITHAW's errno,
 *               0 ok); 'X' deadline passed, thawed by the guard (err)
 *   bytes 1-3   zero
 *   bytes 4-7   err: int32 little-endian, a positive errno or 0
 *   bytes 8-15  value: int64 little-endian, CLOCK_MONOTONIC nanoseconds
 * CLOCK_MONOTONIC is the same clock in every process of the machine, so the
 * deadline is absolute and means the same to both sides.
 *
 * Return codes: 0 or -errno with a message for amb_provider_errmsg().
 */
#ifndef AMBER_PROVIDERS_FSFREEZE_H
#define AMBER_PROVIDERS_FSFREEZE_H

#include <sys/types.h>

typedef struct amb_freeze amb_freeze;

/* The longest deadline accepted (one hour); amber's holds last seconds. */
#define AMB_FREEZE_MAX_MS 3600000u

/*
 * Freeze the filesystem holding path (any file or directory on it; the
 * whole filesystem is frozen) for at most deadline_ms, counted from just
 * before FIFREEZE.  On success *out is the handle to pass to amb_fsthaw();
 * writes to the filesystem block until then (reads go on).
 *
 * Returns 0;
 *   -EINVAL      path or out NULL, deadline_ms 0 or above AMB_FREEZE_MAX_MS
 *   -ENOENT ...  path cannot be opened (-errno of open)
 *   -EBUSY       the filesystem is already frozen
 *   -EOPNOTSUPP  the filesystem cannot be frozen (tmpfs, ...)
 *   -EPERM       not permitted (needs CAP_SYS_ADMIN)
 *   -ECHILD      the guard could not be started or died before the freeze
 *                (the filesystem is not left frozen)
 *   -ENOMEM, -EMFILE, -EAGAIN  out of memory, descriptors or processes
 */
int amb_fsfreeze(const char *path, unsigned deadline_ms, amb_freeze **out);

/*
 * Thaw and free the handle (always freed; NULL is a no-op returning 0).
 * The filesystem takes writes again when this returns, whatever it returns.
 *
 * Returns 0 when the filesystem was frozen the whole time until now;
 *   -ETIMEDOUT   the deadline passed first and the guard thawed it then:
 *                writes were not held throughout
 *   -EINVAL      it was already thawed by someone else (fsfreeze -u):
 *                writes were not held throughout
 *   -errno       FITHAW failed otherwise
 */
int amb_fsthaw(amb_freeze *h);

/* The guard's process id (tests kill it to check the fallback). */
pid_t amb_freeze_guard_pid(const amb_freeze *h);

/* The guard executable amb_fsfreeze will run, or NULL when it will run the
 * guard loop in the forked child instead. */
const char *amb_thaw_guard_path(void);

/*
 * The guard loop (amber-thaw-guard's main, and the fallback in the forked
 * child): sock is the guard's end of the socket pair, fsfd a descriptor on
 * the filesystem, label the path for log lines on standard error.  Uses
 * only async-signal-safe calls.  Returns the exit status (0).
 */
int amb_thaw_guard_run(int sock, int fsfd, const char *label);

#endif
