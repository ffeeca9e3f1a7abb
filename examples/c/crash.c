/* An example C program using the crashmon C API: it annotates, reports a
 * handled error, then crashes. Build:
 *   cc -I crates/capi/include examples/c/crash.c -L target/release -lcrashmon -o crash
 * Run with the crashmon executable findable (next to it, on PATH, or
 * CRASHMON_MONITOR=...). Exits 222 if it failed to crash. */
#include <stdio.h>
#include <stdlib.h>
#include "crashmon.h"

static void __attribute__((noinline)) parse_config(volatile int *config) {
    *config = 42; /* config is NULL: SIGSEGV */
}

int main(void) {
    if (crashmon_init(NULL) != CRASHMON_OK) {
        fprintf(stderr, "crashmon_init: %s\n", crashmon_last_error());
        return 1;
    }
    crashmon_annotate("component", "example-c");
    crashmon_breadcrumb(CRASHMON_LEVEL_INFO, "config", "loading /etc/example.conf");
    if (crashmon_breadcrumb(42, "config", "bad level") != CRASHMON_E_INVALID) {
        fprintf(stderr, "crashmon_breadcrumb accepted level 42\n");
        return 3;
    }
    char id[37];
    if (crashmon_request_dump("example: handled error", id) == CRASHMON_OK) {
        printf("requested id=%s\n", id);
        fflush(stdout);
    } else {
        fprintf(stderr, "crashmon_request_dump: %s\n", crashmon_last_error());
    }
    parse_config((volatile int *)0);
    return 222;
}
