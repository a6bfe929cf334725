/* hello-c: an unmodified C program (wasi-libc's printf, getenv, clock) run as
 * an Atoll service through the kernel's WASI preview1 subset. It also makes a
 * call that fails (lseek on stdout: ESPIPE, as on a terminal), shows the
 * errno, keeps running, and ends with exit status 3, which the kernel reports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("hello from C: printf works, %d args:", argc);
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");

    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");

    struct timespec before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, NULL);
    clock_gettime(CLOCK_MONOTONIC, &after);
    long slept_ms = (after.tv_sec - before.tv_sec) * 1000 + (after.tv_nsec - before.tv_nsec) / 1000000;
    printf("slept %s\n", slept_ms >= 20 ? "at least 20 ms" : "too little");

    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    printf("wall clock after 2020: %s\n", wall.tv_sec > 1577836800 ? "yes" : "no");

    errno = 0;
    off_t where = lseek(STDOUT_FILENO, 0, SEEK_CUR);
    printf("lseek on stdout: %lld, errno %d (%s); still running\n", (long long)where, errno,
           strerror(errno));

    unsigned char bytes[16];
    getentropy(bytes, sizeof bytes);
    int nonzero = 0;
    for (unsigned i = 0; i < sizeof bytes; i++)
        nonzero |= bytes[i];
    printf("random bytes: %s\n", nonzero ? "ok" : "all zero");

    fprintf(stderr, "exiting with status 3\n");
    return 3;
}
