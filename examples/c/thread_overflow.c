/* A C program whose thread, created by plain pthread_create with a small
 * (64 KiB) stack, overflows that stack. Without an alternate signal stack on
 * that thread no handler could run. Build with -DWITH_CRASHMON and
 * -lcrashmon to use the C API; without, run it under `crashmon run`.
 * Prints "crashing tid=T" first; exits 222 if it failed to crash. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef WITH_CRASHMON
#include "crashmon.h"
#endif

static int __attribute__((noinline)) recurse(volatile int depth) {
    volatile char frame[1024];
    memset((char *)frame, depth & 0xff, sizeof frame);
    return recurse(depth + 1) + frame[depth % sizeof frame];
}

static void *worker(void *arg) {
    (void)arg;
    printf("crashing tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    recurse(0);
    return NULL;
}

int main(void) {
#ifdef WITH_CRASHMON
    if (crashmon_init(NULL) != CRASHMON_OK) {
        fprintf(stderr, "crashmon_init: %s\n", crashmon_last_error());
        return 1;
    }
#endif
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    if (pthread_create(&t, &attr, worker, NULL) != 0) {
        return 1;
    }
    pthread_join(t, NULL);
    return 222;
}
