/* A C++ program (built with -fnon-call-exceptions) whose SIGSEGV handler,
 * set after crashmon_init, throws: the exception unwinds through crashmon's
 * signal handler to the faulting call's catch, three times ("caught"),
 * then the program exits 0. Used by crates/capi/tests/c_api.rs. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "crashmon.h"

struct Fault {};

static void on_segv(int, siginfo_t *, void *) { throw Fault(); }

__attribute__((noinline)) static void touch(volatile int *p) { *p = 1; }

int main() {
    if (crashmon_init(NULL) != CRASHMON_OK) {
        fprintf(stderr, "crashmon_init: %s\n", crashmon_last_error());
        return 1;
    }
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_segv;
    act.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &act, NULL);
    int caught = 0;
    for (int i = 0; i < 3; i++) {
        try {
            touch((volatile int *)0x10);
        } catch (Fault &) {
            caught++;
        }
    }
    printf("caught=%d\n", caught);
    return 0;
}
