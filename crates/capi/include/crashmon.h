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
 * SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP or SIGSYS does not
 * replace crashmon's; sigaction queries return what the program set.
 * Such a handler set after crashmon_init sees a fault the kernel raised
 * (a bad access, a trap, seccomp's SIGSYS) first, as it would without
 * crashmon, so programs that recover from faults (guard pages, probes with
 * sigsetjmp, JVMs, wasm runtimes) keep working; crashmon dumps when the
 * handler gives up on the fault: it resets to SIG_DFL and returns or
 * re-raises, calls abort(), exit() or _exit() (the library interposes
 * exit, _exit and _Exit to report first, and longjmp/siglongjmp to notice
 * a handler jumping out); the report describes the original fault.
 * For signals sent with raise()/kill() and handlers that were there before
 * crashmon_init, crashmon dumps first, then calls the handler.
 * CRASHMON_INTERPOSE_SIGNALS=0 in the environment turns the interposition
 * off (a handler the program sets then replaces crashmon's).
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
 * after crashmon_init: `enabled` non-zero (the default) keeps ours,
 * with the program's handler behind it (see the top of this file); 0 lets
 * such calls replace ours, as without crashmon (then faults the program's
 * handler gives up on are not reported). Call it
 * before setting those handlers. Same as CRASHMON_INTERPOSE_SIGNALS=0 in
 * the environment, for programs that cannot set their own environment
 * before the library loads. */
void crashmon_set_signal_interposition(int enabled);

/* A function every crash signal is offered to before crashmon dumps,
 * whenever it was registered: it returns non-zero if it handled the signal
 * (execution resumes with the context it left, e.g. after it made a guard
 * page accessible), 0 to let crashmon report the crash. It runs inside the
 * signal handler, on the alternate stack: async-signal-safe calls only.
 * If it calls abort() or _exit() instead, the report describes the
 * original fault. NULL removes it. (Crashpad's and Breakpad's "first
 * chance handler".) */
typedef int (*crashmon_first_chance_handler)(int sig, void *info /* siginfo_t * */, void *ucontext);
void crashmon_set_first_chance_handler(crashmon_first_chance_handler handler);

/* The message of the calling thread's last failure ("" if none). Valid until
 * the next crashmon call on this thread. */
const char *crashmon_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* CRASHMON_H */
