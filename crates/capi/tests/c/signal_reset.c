/* A C program that replaces the SIGSEGV disposition after crashmon is
 * installed, then crashes (a NULL write). Used by crates/capi/tests/c_api.rs.
 *
 *   signal_reset MODE
 *
 * MODE: "signal"    signal(SIGSEGV, handler)
 *       "sigaction" sigaction(SIGSEGV, {SA_SIGINFO handler})
 *       "default"   signal(SIGSEGV, SIG_DFL)
 *       "direct"    libc's own signal(), found with dlopen/dlsym so that no
 *                   interposition sees it (the control: crashmon loses).
 *       "fork"      signal(SIGSEGV, handler), then a forked child (which
 *                   crashmon declines to report) crashes; the parent
 *                   prints "child signal=N" (or "child exit=N") and exits 0.
 *                   The child has 5 s (alarm) to die by its fault.
 *
 * Built with -DWITH_CRASHMON and -lcrashmon it calls crashmon_init first
 * (with -DNO_INTERPOSE, after crashmon_set_signal_interposition(0));
 * with -std=c99 -DSTRICT_SIGNAL its signal() is glibc's __sysv_signal;
 * without, run it under `crashmon run` (the preload installs before main).
 * Prints "previous=default|other" (what the replaced disposition was, as
 * the app sees it), "current=app|default|other" (a sigaction query after
 * the change), and the app's handler prints "app handler ran sig=N",
 * restores SIG_DFL and returns. Exits 222 if it failed to crash. */
#ifdef STRICT_SIGNAL
/* -std=c99 without _DEFAULT_SOURCE: glibc's <signal.h> makes `signal`
 * a call to __sysv_signal (System V semantics). */
#define _POSIX_C_SOURCE 200809L
#else
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef WITH_CRASHMON
#include "crashmon.h"
#endif

typedef void (*handler_t)(int);

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

/* How the handler puts the default action back (as many apps' handlers do
 * before returning, so the fault ends the process): the same signal() the
 * program used to install it. */
static handler_t (*set_handler)(int, handler_t) = signal;

static void on_segv(int sig) {
    char line[] = "app handler ran sig=00\n";
    line[20] = '0' + sig / 10;
    line[21] = '0' + sig % 10;
    say(line);
    set_handler(sig, SIG_DFL);
}

static void on_segv_info(int sig, siginfo_t *info, void *uc) {
    (void)info;
    (void)uc;
    on_segv(sig);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "signal";
#ifdef WITH_CRASHMON
#ifdef NO_INTERPOSE
    crashmon_set_signal_interposition(0);
#endif
    if (crashmon_init(NULL) != CRASHMON_OK) {
        fprintf(stderr, "crashmon_init: %s\n", crashmon_last_error());
        return 1;
    }
#endif
    handler_t previous;
    if (strcmp(mode, "signal") == 0 || strcmp(mode, "fork") == 0) {
        previous = signal(SIGSEGV, on_segv);
    } else if (strcmp(mode, "default") == 0) {
        previous = signal(SIGSEGV, SIG_DFL);
    } else if (strcmp(mode, "sigaction") == 0) {
        struct sigaction act, old;
        memset(&act, 0, sizeof act);
        act.sa_sigaction = on_segv_info;
        act.sa_flags = SA_SIGINFO;
        sigemptyset(&act.sa_mask);
        if (sigaction(SIGSEGV, &act, &old) != 0) {
            return 1;
        }
        previous = old.sa_handler;
#ifdef RTLD_NOLOAD
    } else if (strcmp(mode, "direct") == 0) {
        void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        handler_t (*libc_signal)(int, handler_t) = libc ? (handler_t(*)(int, handler_t))dlsym(libc, "signal") : NULL;
        if (!libc_signal) {
            return 1;
        }
        set_handler = libc_signal;
        previous = libc_signal(SIGSEGV, on_segv);
#endif
    } else {
        return 2;
    }
    say(previous == SIG_DFL ? "previous=default\n" : "previous=other\n");
    struct sigaction now;
    sigaction(SIGSEGV, NULL, &now);
    if (now.sa_handler == on_segv || now.sa_sigaction == on_segv_info) {
        say("current=app\n");
    } else if (now.sa_handler == SIG_DFL) {
        say("current=default\n");
    } else {
        say("current=other\n");
    }
    if (strcmp(mode, "fork") == 0) {
        pid_t child = fork();
        if (child < 0) {
            return 1;
        }
        if (child > 0) {
            int status = 0;
            if (waitpid(child, &status, 0) != child) {
                return 1;
            }
            char line[64];
            if (WIFSIGNALED(status)) {
                snprintf(line, sizeof line, "child signal=%d\n", WTERMSIG(status));
            } else {
                snprintf(line, sizeof line, "child exit=%d\n", WEXITSTATUS(status));
            }
            say(line);
            return 0;
        }
        alarm(5);
    }
    *(volatile int *)0 = 1;
    return 222;
}
