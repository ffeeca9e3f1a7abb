/* Signals delivered while the monitor has the process stopped for a dump
 * must not be lost: a thread sends itself SIGUSR1 again and again and
 * waits for its handler to count each one, while the main thread asks for
 * dumps (the app keeps running after each). A signal the capture swallowed
 * would leave the pump waiting: it gives up after 5 s and the program
 * exits 3.
 *
 * Prints `dumps N` and `signals N` and exits 0 when every dump was filed
 * and every signal handled. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "crashmon.h"

#define SIGNALS 200000
#define DUMPS 20

static atomic_int handled;
static atomic_int pump_done;
static atomic_int pump_failed;

static void on_usr1(int sig) {
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *pump(void *arg) {
    (void)arg;
    pid_t pid = getpid();
    pid_t tid = (pid_t)syscall(SYS_gettid);
    for (int i = 0; i < SIGNALS && !atomic_load(&pump_done); i++) {
        syscall(SYS_tgkill, pid, tid, SIGUSR1);
        double deadline = now() + 5.0;
        while (atomic_load(&handled) < i + 1) {
            if (now() > deadline) {
                printf("signal %d lost\n", i + 1);
                atomic_store(&pump_failed, 1);
                return NULL;
            }
        }
    }
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    if (crashmon_init(NULL) != 0) {
        printf("init failed\n");
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, pump, NULL);
    int dumps = 0;
    for (int i = 0; i < DUMPS && !atomic_load(&pump_failed); i++) {
        char id[37];
        if (crashmon_request_dump("signal pump", id) == 0) {
            dumps++;
        }
    }
    atomic_store(&pump_done, 1);
    pthread_join(t, NULL);
    printf("dumps %d\n", dumps);
    printf("signals %d\n", atomic_load(&handled));
    return atomic_load(&pump_failed) ? 3 : 0;
}
