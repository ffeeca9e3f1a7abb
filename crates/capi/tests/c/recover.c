/* A C program whose own SIGSEGV handling recovers from faults, as runtimes
 * (garbage collectors, JVMs, wasm runtimes) and memory probes do, with
 * crashmon installed. Used by crates/capi/tests/c_api.rs.
 *
 *   recover MODE
 *
 * MODE: "guard"  a SIGSEGV handler (sigaction, SA_SIGINFO) set after init
 *                makes a PROT_NONE guard page writable when a write hits
 *                it and returns; the program writes to the page 3 times
 *                (protecting it again after each), prints "recovered=3"
 *                and exits 0. A fault anywhere else: the handler gives up
 *                by resetting to SIG_DFL and returning.
 *       "probe"  sigsetjmp/siglongjmp probes: the handler jumps out of
 *                3 reads of unmapped memory ("probe=unmapped" each), then
 *                the program writes to 0x1234 outside a probe and the
 *                handler gives up with abort().
 *       "exit"   the program writes to 0x1234; the handler prints
 *                "app handler exits" and calls _exit(3).
 *       "first"  (needs -DWITH_CRASHMON) no sigaction: the guard-page
 *                logic is registered with crashmon_set_first_chance_handler;
 *                3 recovered writes ("recovered=3"), then a write to 0x1234
 *                it does not handle.
 *       "first-abort" (needs -DWITH_CRASHMON) as "first", but the
 *                registered function gives up on the write to 0x1234 by
 *                calling abort().
 *       "raise"  the handler gives up on the write to 0x1234 by resetting
 *                to SIG_DFL and raising SIGSEGV (pending until it returns).
 *       "exit-atexit"  as "exit" with exit(4).
 *       "exit-no-altstack"  as "exit" on a thread without an alternate
 *                signal stack (sigaltstack SS_DISABLE first).
 *       "in-handler"  the handler itself divides by zero (SIGFPE).
 *       "stale"  an SA_ONSTACK SIGUSR1 handler runs a sigsetjmp probe the
 *                SIGSEGV handler jumps out of (leaving its frame behind on
 *                the alternate stack), then an SA_ONSTACK SIGTERM handler
 *                with a large frame calls exit(0): exits 0, no report.
 *       "abort-ignored"  signal(SIGABRT, SIG_IGN) after init, then abort()
 *                (which ends the process anyway: glibc resets SIGABRT to
 *                SIG_DFL internally, behind any interposition).
 *       "kill-ignored"  signal(SIGABRT, SIG_IGN), then kill(getpid(),
 *                SIGABRT): ignored; prints "survived" and exits 0.
 *       "stale-nodefer"  as "stale", with the SIGSEGV handler set with
 *                SA_NODEFER and every signal blocked in the SIGTERM
 *                handler (so neither the mask nor the stack position tells
 *                the stale entry apart).
 *       "threads-exit"  4 threads write to 0x1234 at once; each handler
 *                calls exit(4).
 *
 * Built with -DWITH_CRASHMON and -lcrashmon it calls crashmon_init first;
 * without, run it under `crashmon run`. Exits 222 if it failed to crash. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <unistd.h>
#ifdef WITH_CRASHMON
#include "crashmon.h"
#endif

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static char *guard;
static long page;
static const char *mode = "guard";
static sigjmp_buf probe_env;
static volatile sig_atomic_t probing;

/* The guard-page logic: unprotect the page if the fault is in it. */
static int recover_guard(siginfo_t *info) {
    char *addr = (char *)info->si_addr;
    if (guard && addr >= guard && addr < guard + page) {
        return mprotect(guard, page, PROT_READ | PROT_WRITE) == 0;
    }
    return 0;
}

static volatile int zero, seven = 7;

static void on_segv(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    if (strncmp(mode, "stale", 5) == 0) {
        siglongjmp(probe_env, 1);
    }
    if (strcmp(mode, "threads-exit") == 0) {
        exit(4);
    }
    if (strcmp(mode, "raise") == 0) {
        say("app handler raises\n");
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (strcmp(mode, "in-handler") == 0) {
        say("app handler divides by zero\n");
        zero = seven / zero; /* idiv: SIGFPE (1 / x compiles without one) */
        return;
    }
    if (strcmp(mode, "exit-atexit") == 0) {
        say("app handler exits\n");
        exit(4);
    }
    if (strcmp(mode, "probe") == 0) {
        if (probing) {
            siglongjmp(probe_env, 1);
        }
        say("app handler gives up\n");
        abort();
    }
    if (strcmp(mode, "exit") == 0 || strcmp(mode, "exit-no-altstack") == 0) {
        say("app handler exits\n");
        _exit(3);
    }
    if (recover_guard(info)) {
        return;
    }
    say("app handler gives up\n");
    signal(sig, SIG_DFL);
}

#ifdef WITH_CRASHMON
static int first_chance(int sig, void *info, void *uc) {
    (void)sig;
    (void)uc;
    if (recover_guard((siginfo_t *)info)) {
        return 1;
    }
    if (strcmp(mode, "first-abort") == 0) {
        say("first chance gives up\n");
        abort();
    }
    return 0;
}
#endif

static void on_usr1(int sig) {
    (void)sig;
    void *hole = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sigsetjmp(probe_env, 1) == 0) {
        (void)*(volatile char *)hole;
    } else {
        say("usr1: probe jumped out\n");
    }
}

static void on_term(int sig) {
    (void)sig;
    volatile char big[16384];
    big[0] = 0;
    big[sizeof big - 1] = big[0];
    say("term: exit(0)\n");
    exit(0);
}

static void onstack(int sig, void (*handler)(int), int block_all) {
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_ONSTACK;
    if (block_all) {
        sigfillset(&act.sa_mask);
    } else {
        sigemptyset(&act.sa_mask);
    }
    sigaction(sig, &act, NULL);
}

static pthread_barrier_t start_line;

static void *fault_at_once(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start_line);
    *(volatile int *)0x1234 = 1;
    return NULL;
}

static void guard_writes(void) {
    guard = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard == MAP_FAILED) {
        exit(1);
    }
    int recovered = 0;
    for (int i = 0; i < 3; i++) {
        guard[i * 64] = (char)i; /* faults; the handler unprotects */
        if (guard[i * 64] == (char)i) {
            recovered++;
        }
        mprotect(guard, page, PROT_NONE);
    }
    char line[32];
    snprintf(line, sizeof line, "recovered=%d\n", recovered);
    say(line);
}

int main(int argc, char **argv) {
    mode = argc > 1 ? argv[1] : "guard";
    page = sysconf(_SC_PAGESIZE);
#ifdef WITH_CRASHMON
    if (crashmon_init(NULL) != CRASHMON_OK) {
        fprintf(stderr, "crashmon_init: %s\n", crashmon_last_error());
        return 1;
    }
#endif
    if (strcmp(mode, "first") == 0 || strcmp(mode, "first-abort") == 0) {
#ifdef WITH_CRASHMON
        crashmon_set_first_chance_handler(first_chance);
        guard_writes();
        *(volatile int *)0x1234 = 1;
#endif
        return 222;
    }
    if (strcmp(mode, "abort-ignored") == 0) {
        signal(SIGABRT, SIG_IGN);
        abort();
    }
    if (strcmp(mode, "kill-ignored") == 0) {
        signal(SIGABRT, SIG_IGN);
        kill(getpid(), SIGABRT);
        say("survived\n");
        return 0;
    }
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_segv;
    act.sa_flags = SA_SIGINFO | (strcmp(mode, "stale-nodefer") == 0 ? SA_NODEFER : 0);
    sigemptyset(&act.sa_mask);
    if (sigaction(SIGSEGV, &act, NULL) != 0) {
        return 1;
    }
    if (strcmp(mode, "guard") == 0) {
        guard_writes();
        return 0;
    }
    if (strncmp(mode, "stale", 5) == 0) {
        int nodefer = strcmp(mode, "stale-nodefer") == 0;
        onstack(SIGUSR1, on_usr1, 0);
        onstack(SIGTERM, on_term, nodefer);
        raise(SIGUSR1);
        raise(SIGTERM);
        return 1;
    }
    if (strcmp(mode, "threads-exit") == 0) {
        pthread_t threads[4];
        pthread_barrier_init(&start_line, NULL, 4);
        for (int i = 0; i < 4; i++) {
            pthread_create(&threads[i], NULL, fault_at_once, NULL);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(threads[i], NULL);
        }
        return 222;
    }
    if (strcmp(mode, "exit-no-altstack") == 0) {
        stack_t off;
        memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        if (sigaltstack(&off, NULL) != 0) {
            return 1;
        }
    }
    if (strcmp(mode, "probe") == 0) {
        /* A page that is certainly unmapped: map one, then unmap it. */
        void *hole = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        munmap(hole, page);
        for (int i = 0; i < 3; i++) {
            probing = 1;
            if (sigsetjmp(probe_env, 1) == 0) {
                (void)*(volatile char *)hole;
                say("probe=mapped\n");
            } else {
                say("probe=unmapped\n");
            }
            probing = 0;
        }
    }
    *(volatile int *)0x1234 = 1;
    return 222;
}
