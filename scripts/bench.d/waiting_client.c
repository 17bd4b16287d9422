/* A DCAMS client that waits for each answer: N `refer` requests, one at a
 * time, written in C so that the client's own cost per round trip (a pipe
 * write, a blocking read) is as small as bare SQLite's loop is.
 * Usage: waiting_client N -- whp serve ARGS...   Prints requests/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--") != 0) { fprintf(stderr, "usage: waiting_client N -- CMD...\n"); return 2; }
    long n = atol(argv[1]);
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child)) { perror("pipe"); return 2; }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(to_child[0], 0); dup2(from_child[1], 1);
        close(to_child[1]); close(from_child[0]);
        execvp(argv[3], argv + 3);
        perror("exec"); _exit(127);
    }
    close(to_child[0]); close(from_child[1]);
    const char *S = "ABCEGHJKLMNPRSTWXYZ";
    char line[512], buf[8192];
    size_t have = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        int len = snprintf(line, sizeof line,
            "{\"v\":1,\"id\":\"w%ld\",\"op\":\"refer\",\"actor\":{\"role\":\"work_coach\",\"id\":\"WC1\"},"
            "\"referral_id\":\"W%ld\",\"claimant\":{\"nino\":\"W%c%06ld%c\"},\"district\":\"example-north\","
            "\"group\":\"disability\",\"referral_date\":\"2017-11-01\"}\n",
            i, i, S[(i / 1000000) % 19], i % 1000000, "ABCD"[i % 4]);
        if (write(to_child[1], line, len) != len) { perror("write"); return 1; }
        for (;;) {
            char *nl = memchr(buf, '\n', have);
            if (nl) {
                size_t used = nl - buf + 1;
                if (!memmem(buf, used, "\"ok\":true", 9)) { fprintf(stderr, "unexpected answer: %.*s\n", (int)used, buf); return 1; }
                memmove(buf, buf + used, have - used); have -= used;
                break;
            }
            ssize_t r = read(from_child[0], buf + have, sizeof buf - have);
            if (r <= 0) { fprintf(stderr, "serve closed its output\n"); return 1; }
            have += r;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(to_child[1]);
    int status; waitpid(pid, &status, 0);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.1f\n", n / secs);
    return 0;
}
