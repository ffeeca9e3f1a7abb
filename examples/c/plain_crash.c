/* A C program that knows nothing about crashmon; `crashmon run -- ./plain_crash`
 * reports its crash through LD_PRELOAD. Exits 222 if it failed to crash. */
#include <stddef.h>

static void __attribute__((noinline)) write_record(volatile char *record) {
    record[0] = 'x'; /* record is NULL: SIGSEGV */
}

int main(void) {
    write_record(NULL);
    return 222;
}
