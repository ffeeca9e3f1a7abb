/*
 * The floor of a ptrace capture's per-thread cost on this machine: the
 * system calls crashmon's patched minidump-writer makes for every thread,
 * and nothing else (BENCHMARKS.md, "Scaling with threads and heap").
 *
 *   cc -O2 -pthread -o ptrace_floor crates/bench/c/ptrace_floor.c
 *   ./ptrace_floor 1000        # threads in the target, default 1000
 *
 * A child process starts N-1 idle threads (8 KiB of used stack each). Then,
 * three times each with one and with two tracer threads (each taking half
 * of the target's threads): PTRACE_SEIZE all, PTRACE_INTERRUPT all, wait
 * for every stop (waitid WNOWAIT), then per thread PTRACE_GETREGSET
 * (general and FP registers), one PTRACE_PEEKUSER (DR7) and one
 * process_vm_readv of 8 KiB of stack; then PTRACE_DETACH all. Prints the
 * time per thread.
 */
#define _GNU_SOURCE
#ifndef __x86_64__
#error "ptrace_floor reads x86-64 registers"
#endif
#include <dirent.h>
#include <errno.h>
#include <elf.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void *idle(void *arg) {
    volatile char used[8192];
    for (size_t i = 0; i < sizeof used; i++) used[i] = 1;
    for (;;) pause();
    return arg;
}

/* A failed call makes the numbers meaningless: stop. */
static void check(long rv, const char *what, pid_t tid) {
    if (rv == -1) {
        fprintf(stderr, "ptrace_floor: %s of thread %d: %s\n", what, tid, strerror(errno));
        exit(1);
    }
}

static pid_t target;
static pid_t tids[70000];
static int ntids;
static char stack_copy[2][8192];

struct share { int lo, hi, who; pthread_barrier_t *all_read; };

static void *tracer(void *arg) {
    struct share *s = arg;
    for (int i = s->lo; i < s->hi; i++) check(ptrace(PTRACE_SEIZE, tids[i], 0, 0), "PTRACE_SEIZE", tids[i]);
    for (int i = s->lo; i < s->hi; i++) check(ptrace(PTRACE_INTERRUPT, tids[i], 0, 0), "PTRACE_INTERRUPT", tids[i]);
    for (int i = s->lo; i < s->hi; i++) {
        siginfo_t si;
        check(waitid(P_PID, tids[i], &si, WSTOPPED | __WALL | WNOWAIT), "waitid", tids[i]);
    }
    for (int i = s->lo; i < s->hi; i++) {
        struct user_regs_struct regs;
        struct iovec r = {&regs, sizeof regs};
        check(ptrace(PTRACE_GETREGSET, tids[i], NT_PRSTATUS, &r), "PTRACE_GETREGSET", tids[i]);
        struct user_fpregs_struct fp;
        struct iovec f = {&fp, sizeof fp};
        check(ptrace(PTRACE_GETREGSET, tids[i], NT_PRFPREG, &f), "PTRACE_GETREGSET (FP)", tids[i]);
        errno = 0;
        long dr7 = ptrace(PTRACE_PEEKUSER, tids[i], offsetof(struct user, u_debugreg) + 7 * sizeof(long), 0);
        if (errno != 0) check(dr7, "PTRACE_PEEKUSER", tids[i]);
        struct iovec local = {stack_copy[s->who], sizeof stack_copy[0]};
        struct iovec remote = {(void *)(regs.rsp & ~4095UL), sizeof stack_copy[0]};
        check(process_vm_readv(target, &local, 1, &remote, 1, 0), "process_vm_readv", tids[i]);
    }
    pthread_barrier_wait(s->all_read);
    for (int i = s->lo; i < s->hi; i++) check(ptrace(PTRACE_DETACH, tids[i], 0, 0), "PTRACE_DETACH", tids[i]);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < 1 || n > 60000) {
        fprintf(stderr, "usage: ptrace_floor [threads 1..60000]\n");
        return 2;
    }
    int ready[2];
    if (pipe(ready) != 0) return 1;
    target = fork();
    if (target == -1) return 1;
    if (target == 0) {
        close(ready[0]);
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 65536);
        for (int i = 0; i < n - 1; i++) {
            pthread_t t;
            if (pthread_create(&t, &a, idle, NULL) != 0) break;
        }
        pthread_attr_destroy(&a);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        for (;;) pause();
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) {
        fprintf(stderr, "ptrace_floor: the target did not start\n");
        return 1;
    }
    usleep(100000);
    char task[64];
    snprintf(task, sizeof task, "/proc/%d/task", target);
    for (int run = 0; run < 6; run++) {
        int tracers = run % 2 + 1;
        DIR *d = opendir(task);
        struct dirent *e;
        ntids = 0;
        while (d && (e = readdir(d)) && ntids < 70000)
            if (e->d_name[0] != '.') tids[ntids++] = atoi(e->d_name);
        if (d) closedir(d);
        pthread_barrier_t all_read;
        pthread_barrier_init(&all_read, NULL, tracers);
        struct share shares[2];
        pthread_t threads[2];
        double t0 = now_us();
        for (int k = 0; k < tracers; k++) {
            shares[k] = (struct share){ntids * k / tracers, ntids * (k + 1) / tracers, k, &all_read};
            if (pthread_create(&threads[k], NULL, tracer, &shares[k]) != 0) {
                fprintf(stderr, "ptrace_floor: cannot start a tracer thread\n");
                kill(target, SIGKILL);
                return 1;
            }
        }
        for (int k = 0; k < tracers; k++) pthread_join(threads[k], NULL);
        double t1 = now_us();
        printf("threads=%d tracers=%d total %.0f us, %.1f us/thread\n", ntids, tracers, t1 - t0, (t1 - t0) / ntids);
        pthread_barrier_destroy(&all_read);
        usleep(50000);
    }
    kill(target, SIGKILL);
    waitpid(target, NULL, 0);
    return 0;
}
