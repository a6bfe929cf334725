/* WASI file throughput for `image-builder bench`: once the storage bench has
 * made /STORDONE (its own reads are over), reads /BIG.BIN with read() in
 * 64 KiB requests and writes a 1 MiB file in 64 KiB requests, through the
 * kernel's WASI files and the FAT service, and prints `bench: NAME=VALUE`. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static unsigned char chunk[65536];

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(void) {
    struct stat st;
    for (int i = 0; i < 6000 && stat("STORDONE", &st) != 0; i++) usleep(10000);
    int fd = open("BIG.BIN", O_RDONLY);
    if (fd < 0) {
        perror("bench: open BIG.BIN");
        return 1;
    }
    double started = seconds();
    long total = 0;
    ssize_t got;
    while ((got = read(fd, chunk, sizeof chunk)) > 0) total += got;
    double elapsed = seconds() - started;
    close(fd);
    printf("bench: wasi_read_kb_per_s=%.0f\n", (double)total / elapsed / 1000.0);

    memset(chunk, 0x5a, sizeof chunk);
    fd = open("WASIOUT.BIN", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("bench: open WASIOUT.BIN");
        return 1;
    }
    started = seconds();
    long written = 0;
    while (written < 1024 * 1024) {
        ssize_t put = write(fd, chunk, sizeof chunk);
        if (put <= 0) break;
        written += put;
    }
    close(fd);
    elapsed = seconds() - started;
    printf("bench: wasi_write_kb_per_s=%.0f\n", (double)written / elapsed / 1000.0);
    printf("bench: wasi_done=1\n");
    return 0;
}
