/* crashmon C API: crash reporting for C and C++ programs.
 *
 * Link with -lcrashmon (libcrashmon.so or libcrashmon.a, built by
 * `cargo build --release -p crashmon-capi`). The `crashmon` executable must be
 * findable: $CRASHMON_MONITOR, next to your executable, or on PATH.
 *
 * All functions return 0 on success and a negative code on failure; a
 * message for the last failure of the calling thread is available from
 * crashmon_last_error(). None of them may be called from a signal handler.
 *
 * The library also interposes pthread_create (every new thread gets an
 * alternate signal stack) and signal, sigaction, bsd_signal, sysv_signal:
 * while crashmon is installed, a handler (or SIG_DFL) the program sets for
 * SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP or SIGSYS is kept as the
 * handler crashmon calls after writing its dump, instead of replacing
 * crashmon's; sigaction queries return what the program set. Set
 * CRASHMON_INTERPOSE_SIGNALS=0 in the environment to turn this off (for
 * programs that handle these signals in normal operation, e.g. a JVM).
 */
#ifndef CRASHMON_H
#define CRASHMON_H

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. */
#define CRASHMON_OK 0
#define CRASHMON_E_INVALID (-1)        /* a NULL or non-UTF-8 argument */
#define CRASHMON_E_ALREADY (-2)        /* crashmon_init was already called */
#define CRASHMON_E_NOT_INSTALLED (-3)  /* crashmon_init was not called */
#define CRASHMON_E_MONITOR (-4)        /* the monitor could not be started or reached */
#define CRASHMON_E_FAILED (-5)         /* the monitor could not write the dump */
#define CRASHMON_E_FILTERED (-6)       /* left out by the handler's filter rules */

/* Start the monitor and install the crash handlers. `database` is the crash
 * database directory, or NULL for $CRASHMON_DATABASE / the default. */
int crashmon_init(const char *database);

/* Set an annotation (key/value) that goes into every report. Keys are cut to
 * 128 bytes, values to 20 KiB. */
int crashmon_annotate(const char *key, const char *value);

/* Breadcrumb levels. */
#define CRASHMON_LEVEL_TRACE 0
#define CRASHMON_LEVEL_DEBUG 1
#define CRASHMON_LEVEL_INFO 2
#define CRASHMON_LEVEL_WARNING 3
#define CRASHMON_LEVEL_ERROR 4

/* Record a breadcrumb: a recent event that goes into the next report (the
 * newest 100 are kept). `level` is one of CRASHMON_LEVEL_*; `category` is
 * cut to 64 bytes, `message` to 1 KiB. */
int crashmon_breadcrumb(int level, const char *category, const char *message);

/* File a report of this live process (a handled error) and keep running.
 * If `report_id` is not NULL it receives the report id (36 chars + NUL). */
int crashmon_request_dump(const char *reason, char report_id[37]);

/* Uninstall the handlers and disconnect from the monitor. */
void crashmon_shutdown(void);

/* Whether libcrashmon keeps its crash handler when the program sets a
 * crash signal's disposition (sigaction, signal, bsd_signal, sysv_signal)
 * after crashmon_init: `enabled` non-zero (the default) keeps ours and
 * chains to the program's handler after the dump; 0 lets such calls replace
 * ours, as without crashmon (for programs that handle SIGSEGV, SIGBUS...
 * in normal operation: JVMs, garbage collectors, wasm runtimes). Call it
 * before setting those handlers. Same as CRASHMON_INTERPOSE_SIGNALS=0 in
 * the environment, for programs that cannot set their own environment
 * before the library loads. */
void crashmon_set_signal_interposition(int enabled);

/* The message of the calling thread's last failure ("" if none). Valid until
 * the next crashmon call on this thread. */
const char *crashmon_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CRASHMON_H */
