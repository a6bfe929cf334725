/* wasi-files C test: an ordinary wasi-libc program (nothing Atoll-specific)
 * using stdio, dirent, rename, unlink, mkdir and stat on its preopened
 * directories ("/" read-write, "/docs" read-only), then the error paths, a
 * 4 MiB read in 64 KiB chunks, and a full disk. Prints PASS/FAIL lines. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures = 0;

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "PASS" : "FAIL", what);
    if (!ok) failures++;
}

/* errno of a failed call, or 0 if it succeeded. */
#define ERRNO_OF(call) ((call) < 0 ? errno : 0)

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int main(void) {
    char line[256];

    /* Files and directories. */
    check(mkdir("c", 0755) == 0, "mkdir c");
    check(mkdir("c/sub", 0755) == 0, "mkdir c/sub");
    FILE *f = fopen("c/notes.txt", "w");
    check(f != NULL, "fopen c/notes.txt w");
    if (f) {
        fprintf(f, "first line\nsecond line %d\n", 42);
        check(fclose(f) == 0, "fclose after fprintf");
    }
    f = fopen("c/notes.txt", "r");
    check(f != NULL, "fopen c/notes.txt r");
    if (f) {
        check(fgets(line, sizeof line, f) && strcmp(line, "first line\n") == 0, "fgets first line");
        check(fgets(line, sizeof line, f) && strcmp(line, "second line 42\n") == 0, "fgets second line");
        check(fgets(line, sizeof line, f) == NULL && feof(f), "fgets at end of file");
        check(fseek(f, 0, SEEK_END) == 0 && ftell(f) == 26, "fseek to the end: 26 bytes");
        check(fseek(f, 6, SEEK_SET) == 0 && fgets(line, sizeof line, f) && strcmp(line, "line\n") == 0,
              "fseek 6 then fgets");
        fclose(f);
    }
    f = fopen("c/notes.txt", "a");
    if (f) {
        fputs("appended\n", f);
        fclose(f);
    }
    struct stat st;
    check(stat("c/notes.txt", &st) == 0 && st.st_size == 35 && S_ISREG(st.st_mode), "stat after append: 35 bytes");
    check(stat("c/sub", &st) == 0 && S_ISDIR(st.st_mode), "stat c/sub: a directory");
    check(st.st_mtime > 1700000000, "the directory has a real-time stamp");
    /* Host-made input. */
    f = fopen("INPUT.TXT", "r");
    check(f && fgets(line, sizeof line, f) && strcmp(line, "made on the host\n") == 0, "read INPUT.TXT from the host");
    if (f) fclose(f);
    f = fopen("/docs/ABOUT.TXT", "r");
    check(f && fgets(line, sizeof line, f) && strncmp(line, "about", 5) == 0, "read /docs/ABOUT.TXT");
    if (f) fclose(f);
    /* rename within and across directories, unlink. */
    check(rename("c/notes.txt", "c/renamed.txt") == 0, "rename within c");
    check(rename("c/renamed.txt", "c/sub/moved.txt") == 0, "rename into c/sub");
    check(!exists("c/renamed.txt") && exists("c/sub/moved.txt"), "the file moved");
    f = fopen("c/gone.txt", "w");
    if (f) fclose(f);
    check(unlink("c/gone.txt") == 0 && !exists("c/gone.txt"), "unlink");
    /* A long name. */
    f = fopen("A long file name.txt", "w");
    check(f != NULL, "create A long file name.txt");
    if (f) {
        fprintf(f, "long names work\n");
        fclose(f);
    }
    /* readdir. */
    DIR *dir = opendir("c/sub");
    int seen = 0;
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, "moved.txt") == 0) seen = 1;
        }
        closedir(dir);
    }
    check(seen, "readdir c/sub finds moved.txt");
    dir = opendir(".");
    int count = 0;
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, "A long file name.txt") == 0 || strcmp(entry->d_name, "BIG.BIN") == 0) count++;
        }
        closedir(dir);
    }
    check(count == 2, "readdir / lists the long name and BIG.BIN");

    /* Error paths: each errno as POSIX has it, and the program goes on. */
    check(fopen("missing.txt", "r") == NULL && errno == ENOENT, "missing file: ENOENT");
    check(ERRNO_OF(open("c", O_WRONLY)) == EISDIR, "directory opened for writing: EISDIR");
    int dfd = open("c", O_RDONLY);
    check(dfd >= 0 && read(dfd, line, 10) < 0 && errno == EISDIR, "read of a directory: EISDIR");
    if (dfd >= 0) close(dfd);
    check(ERRNO_OF(open("c/sub/moved.txt/x", O_RDONLY)) == ENOTDIR, "a file as a directory: ENOTDIR");
    check(ERRNO_OF(rmdir("c")) == ENOTEMPTY, "rmdir of a non-empty directory: ENOTEMPTY");
    check(ERRNO_OF(mkdir("c", 0755)) == EEXIST, "mkdir of an existing directory: EEXIST");
    check(ERRNO_OF(open("c/sub/moved.txt", O_CREAT | O_EXCL | O_WRONLY, 0644)) == EEXIST, "O_EXCL on an existing file: EEXIST");
    char longname[300];
    memset(longname, 'x', 256);
    longname[256] = 0;
    check(fopen(longname, "w") == NULL && errno == ENAMETOOLONG, "a 256-byte name: ENAMETOOLONG");
    check(fopen("../outside.txt", "r") == NULL && errno == ENOTCAPABLE, "../ out of /: ENOTCAPABLE");
    check(fopen("/docs/../INPUT.TXT", "r") == NULL && errno == ENOTCAPABLE, "/docs/.. out of /docs: ENOTCAPABLE");
    check(fopen("/docs/new.txt", "w") == NULL && errno == EACCES, "writing in the read-only /docs: EACCES");
    check(close(77) < 0 && errno == EBADF, "close of no descriptor: EBADF");
    check(rmdir("c/sub") < 0 && errno == ENOTEMPTY && unlink("c/sub/moved.txt") == 0 && rmdir("c/sub") == 0,
          "rmdir once empty");

    /* 4 MiB in 64 KiB reads. */
    int big = open("BIG.BIN", O_RDONLY);
    static unsigned char chunk[65536];
    long total = 0;
    int wrong = 0, short_reads = 0;
    if (big >= 0) {
        for (;;) {
            ssize_t got = read(big, chunk, sizeof chunk);
            if (got <= 0) break;
            if (got != (ssize_t)sizeof chunk) short_reads++;
            for (ssize_t i = 0; i < got; i++) {
                long at = total + i;
                if (chunk[i] != (unsigned char)((at * 7 + at / 4096) % 251)) wrong++;
            }
            total += got;
        }
        close(big);
    }
    printf("read BIG.BIN: %ld bytes, %d wrong, %d short reads\n", total, wrong, short_reads);
    check(total == 4 * 1024 * 1024 && wrong == 0 && short_reads == 0, "4 MiB read whole in 64 KiB chunks");

    /* A full disk, once the other programs are done with it. */
    for (int i = 0; i < 600 && !(exists("rust.done") && exists("go.done")); i++) usleep(100000);
    check(exists("rust.done") && exists("go.done"), "the Rust and Go programs finished");
    f = fopen("fill.bin", "w");
    long written = 0;
    int full_errno = 0;
    if (f) {
        setvbuf(f, NULL, _IONBF, 0);
        memset(chunk, 0x5a, sizeof chunk);
        for (int i = 0; i < 200; i++) {
            size_t put = fwrite(chunk, 1, sizeof chunk, f);
            written += (long)put;
            if (put < sizeof chunk) {
                full_errno = errno;
                break;
            }
        }
        fclose(f);
    }
    printf("filled the disk with %ld bytes, then errno %d\n", written, full_errno);
    check(full_errno == ENOSPC, "a full disk: ENOSPC");
    check(unlink("fill.bin") == 0, "unlink the filler");
    f = fopen("c/after.txt", "w");
    check(f != NULL && fputs("space again\n", f) >= 0 && fclose(f) == 0, "write again after freeing space");

    printf("c-files: %d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
