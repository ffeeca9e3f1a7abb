/* A program whose executable segment starts one page above the end of the
 * segment before it, with nothing mapped in between: lld lays a segment
 * out so when its file offset is page-aligned, which the page-aligned
 * function below forces. Run under `crashmon run`, it crashes in
 * crash_here(). */
#include <stdio.h>

__attribute__((aligned(4096), noinline)) int crash_here(volatile int *p) {
    return *p + 1;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("ready\n");
    return crash_here((volatile int *)16);
}
