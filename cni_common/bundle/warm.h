/*
 * The launcher's side of the warm path (docs/packaging.md, "The warm path"): hand a plugin call to a warm
 * process of the same build, which forks one child per call, instead of starting Python again.
 *
 * Why: an exec'd call pays the interpreter's start and its imports (~40 ms) before any kernel work; a child
 * forked from a process that already imported every plugin starts at the plugin's first line.
 *
 * The warm process (cni_common/warm/server.py) listens on <cache>/<build>/warm/w<context>.sock, where <context> is
 * a hash of the caller's namespaces and root directory: a node's runtime always finds the process made in its
 * own context. The launcher connects, sends argv, the environment, its umask and securebits; the child checks the caller (peer credentials, namespaces,
 * root, ids, capabilities, LSM label, securebits, no_new_privs: all equal to its own, or it refuses), joins the
 * caller's cgroups, takes its rlimits, and answers 'A' with its pid (the warm process itself says 'F' as soon as
 * it forked the child: 2 s without it means a hung warm process). Only then does the launcher say 'G' (go),
 * with the descriptors: a call that timed out before 'G' is never run twice. The child's end comes as 'X' (exit
 * code: the child sends it itself once its descriptors are closed, before its exit's teardown) or 'S' (signal:
 * the warm process reaped it); the launcher acts on the first and exits with that code or dies of that signal.
 * If the launcher is killed,
 * the warm process sees the connection close and kills the child.
 *
 * Every failure before 'G' (no process, refused, too slow) falls back to the ordinary exec, so the warm path
 * can only make a call faster. Switch: CNI_SUITE_WARM=on|off|auto, else the first word of <cache>/warm-mode,
 * else WARM_DEFAULT_MODE.
 */
#ifndef CNI_SUITE_WARM_H
#define CNI_SUITE_WARM_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARM_MAGIC "CNIW"
#define WARM_PROTOCOL 1
#define WARM_FORK_TIMEOUT_MS 2000   /* no 'F' (forked) by then: a hung warm process, exec */
#define WARM_ACCEPT_TIMEOUT_MS 10000 /* no 'A' from the forked child by then: exec (a burst's checks take time) */
#define WARM_START_TIMEOUT_MS 3000  /* "on": how long a call waits for the warm process it started */
#define WARM_MAX_PROCESSES 4        /* per build: contexts beyond this just exec */
#define WARM_SETTLED_PARENT_S 10    /* "auto": start a warm process for callers whose parent runs this long */
#define WARM_DEFAULT_IDLE "60"      /* seconds without a call before the warm process exits */
#ifndef WARM_DEFAULT_MODE /* auto: warm for a runtime's calls (settled_parent), exec elsewhere */
#define WARM_DEFAULT_MODE WARM_AUTO
#endif

enum warm_mode { WARM_OFF, WARM_AUTO, WARM_ON };

extern char **environ;

static enum warm_mode parse_warm_mode(const char *word, enum warm_mode fallback) {
    if (!word) return fallback;
    while (*word == ' ' || *word == '\t' || *word == '\n') word++;
    if (strncmp(word, "off", 3) == 0) return WARM_OFF;
    if (strncmp(word, "on", 2) == 0) return WARM_ON;
    if (strncmp(word, "auto", 4) == 0) return WARM_AUTO;
    return fallback;
}

/* The variable wins (a runtime's unit file, the tests); then the operator's file in the cache; then the
 * build's default (docs/packaging.md, "The warm path"). */
static enum warm_mode warm_mode(const char *cache) {
    const char *env = getenv("CNI_SUITE_WARM");
    if (env && *env) return parse_warm_mode(env, WARM_DEFAULT_MODE);
    char path[4200], word[16] = {0};
    snprintf(path, sizeof path, "%s/warm-mode", cache);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return WARM_DEFAULT_MODE;
    ssize_t n = read(fd, word, sizeof word - 1);
    close(fd);
    return n > 0 ? parse_warm_mode(word, WARM_DEFAULT_MODE) : WARM_DEFAULT_MODE;
}

/* FNV-1a over "dev:ino\n" of each namespace and of the root directory; cni_common/warm/context.py computes the
 * same text. Equal contexts share a warm process; the warm child still compares everything itself. */
static void warm_context_key(char out[17]) {
    static const char *const kinds[] = {"mnt", "net", "pid", "user", "uts", "ipc", "cgroup"};
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
    char line[128], path[64];
    for (size_t i = 0; i <= sizeof kinds / sizeof kinds[0]; i++) {
        struct stat st;
        if (i < sizeof kinds / sizeof kinds[0]) snprintf(path, sizeof path, "/proc/self/ns/%s", kinds[i]);
        else snprintf(path, sizeof path, "/");
        if (stat(path, &st) != 0) memset(&st, 0, sizeof st);
        int len = snprintf(line, sizeof line, "%llu:%llu\n", (unsigned long long)st.st_dev,
                           (unsigned long long)st.st_ino);
        for (int j = 0; j < len; j++) h = (h ^ (unsigned char)line[j]) * 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* CNI_SUITE_WARM_DEBUG=1: say on stderr why a call did not take the warm path (operators, tests). */
static void warm_debug(const char *why) {
    const char *debug = getenv("CNI_SUITE_WARM_DEBUG");
    if (debug && *debug == '1') fprintf(stderr, "cni-suite launcher: warm path not taken: %s\n", why);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read exactly len bytes, waiting at most until deadline (monotonic ms; 0: forever). */
static int read_full(int fd, void *buf, size_t len, long long deadline) {
    size_t done = 0;
    while (done < len) {
        if (deadline) {
            long long left = deadline - now_ms();
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (left <= 0) return -1;
            int r = poll(&p, 1, (int)left);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return -1;
        }
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Connect to the warm process of this build and context (build_fd: the build's warm/ folder); -1 when there is
 * none (or it is not root's). */
static int warm_connect(int build_fd, const char *key) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    /* Through the build folder's descriptor: a cache path of any length fits sun_path. */
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/w%s.sock", build_fd, key);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
        close(fd); /* the folder is root-only, so this cannot happen unless the cache was tampered with */
        return -1;
    }
    return fd;
}

/* The request: header, then argv and the environment as NUL-terminated strings. No descriptor travels with it:
 * descriptors queued to a warm process that never reads them (hung, stopped) would hold the runtime's pipes
 * open after we gave up and exec'd, and the runtime would wait for their end forever. */
static int warm_send_request(int sock, int argc, char **argv) {
    size_t envc = 0, strings = 0;
    for (int i = 0; i < argc; i++) strings += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++, envc++) strings += strlen(*e) + 1;
    unsigned char *msg = malloc(28 + strings);
    if (!msg) return -1;
    mode_t mask = umask(0);
    umask(mask);
    memcpy(msg, WARM_MAGIC, 4);
    put_u32(msg + 4, WARM_PROTOCOL);
    put_u32(msg + 8, (uint32_t)mask);
    put_u32(msg + 12, (uint32_t)prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
    put_u32(msg + 16, (uint32_t)argc);
    put_u32(msg + 20, (uint32_t)envc);
    put_u32(msg + 24, (uint32_t)strings);
    char *p = (char *)msg + 28;
    for (int i = 0; i < argc; i++) p = stpcpy(p, argv[i]) + 1;
    for (char **e = environ; *e; e++) p = stpcpy(p, *e) + 1;
    int rc = write_full(sock, msg, 28 + strings);
    free(msg);
    return rc;
}

/* 'G' (go), carrying our stdin, stdout, stderr and working directory: sent only to a child that answered 'A',
 * so it is waiting for exactly this message. */
static int warm_send_go(int sock) {
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) return -1;
    int fds[4] = {0, 1, 2, cwd};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = "G", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    close(cwd);
    return n == 1 ? 0 : -1;
}

/* End this process the way the child ended: its exit code, or death by the same signal (without a core of
 * ours: the child dumped its own if its limits allowed). */
static void warm_finish(const unsigned char reply[5]) {
    int value = (int)((uint32_t)reply[1] | (uint32_t)reply[2] << 8 | (uint32_t)reply[3] << 16 |
                      (uint32_t)reply[4] << 24);
    if (reply[0] == 'S' && value > 0 && value < NSIG) {
        struct rlimit no_core = {0, 0};
        sigset_t all;
        setrlimit(RLIMIT_CORE, &no_core);
        signal(value, SIG_DFL);
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        raise(value);
        _exit(128 + value); /* a signal whose default is not to terminate */
    }
    _exit(reply[0] == 'X' ? value & 0xff : 1);
}

/* Run the call in the warm child. Returns only when the call was not started there (the caller then execs);
 * once the child was told to go, this ends the process with the child's status. */
static void warm_call(int sock, int argc, char **argv) {
    unsigned char reply[5];
    if (warm_send_request(sock, argc, argv) != 0) {
        warm_debug("cannot send the request");
        return;
    }
    if (read_full(sock, reply, 1, now_ms() + WARM_FORK_TIMEOUT_MS) != 0 || reply[0] != 'F') {
        warm_debug("the warm process did not fork in time");
        return;
    }
    if (read_full(sock, reply, 5, now_ms() + WARM_ACCEPT_TIMEOUT_MS) != 0) {
        warm_debug("the warm child did not answer in time");
        return;
    }
    if (reply[0] != 'A') {
        warm_debug("the warm child refused the call (another context)");
        return;
    }
    if (warm_send_go(sock) != 0) { /* the child was not told to go: it never runs */
        warm_debug("cannot send go");
        return;
    }
    if (read_full(sock, reply, 5, 0) != 0) {
        fputs("cni-suite launcher: the warm process ended without the call's status\n", stderr);
        _exit(1);
    }
    warm_finish(reply);
}

/* Warm processes of this build now running (their lock files): more than a few means callers in many short-
 * lived contexts (`ip netns exec` makes a mount namespace per call), where a warm process would not pay. */
static int warm_processes(int build_fd) {
    int fd = openat(build_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    int count = 0;
    if (!d) {
        if (fd >= 0) close(fd);
        return WARM_MAX_PROCESSES;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == 'w' && len > 5 && strcmp(e->d_name + len - 5, ".lock") == 0) count++;
    }
    closedir(d);
    return count;
}

static void close_from(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
    struct rlimit rl;
    long last = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (long)rl.rlim_cur : 65536;
    for (long fd = first; fd < last; fd++) close((int)fd);
}

/* Start the warm process of this build and context, detached (its own session, no descriptor of the runtime's
 * but our in-use lock, an environment of LD_BIND_NOW alone). Returns the read end of a pipe on which it writes
 * one byte once it listens (EOF if it gave up), or -1. */
static int warm_spawn(char *loader, char *library_path, char *program, int in_use_fd) {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    if (pid == 0) {
        if (setsid() < 0 || fork() != 0) _exit(0);
        const char *idle = getenv("CNI_SUITE_WARM_IDLE");
        char idle_arg[32];
        snprintf(idle_arg, sizeof idle_arg, "%s", idle && *idle ? idle : WARM_DEFAULT_IDLE);
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(1);
        int lock_fd = fcntl(in_use_fd, F_DUPFD, 10), ready_fd = fcntl(ready[1], F_DUPFD, 10);
        if (lock_fd < 0 || ready_fd < 0 || dup2(lock_fd, 3) < 0 || dup2(ready_fd, 4) < 0) _exit(1); /* no CLOEXEC */
        close_from(5);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
        if (chdir("/") != 0) _exit(1);
        umask(077);
        static char argv0_option[] = "--argv0", cache_option[] = "--inhibit-cache", path_option[] = "--library-path";
        static char name[] = "cni-suite", mode[] = "warm-server", lock_arg[] = "3", ready_arg[] = "4";
        char *args[] = {loader, argv0_option, name, cache_option, path_option, library_path, program, mode,
                        idle_arg, lock_arg, ready_arg, NULL};
        /* Only LD_BIND_NOW, which the warm process drops as it starts (server.serve): every function the
         * program takes from the C library is bound once here instead of in each child, whose first call of one
         * would look it up and write its GOT page (docs/packaging.md, "Copy-on-write"). */
        static char bind_now[] = "LD_BIND_NOW=1";
        char *env[] = {bind_now, NULL};
        execve(loader, args, env);
        _exit(127);
    }
    close(ready[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return ready[0];
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* "auto" starts a warm process only where later calls will come from the same context: for a caller whose parent
 * is a daemon (it has run for WARM_SETTLED_PARENT_S) in the caller's own namespaces and root directory, as
 * containerd, CRI-O or a kubelet calls its plugins. A short-lived parent (cnitool, a CLI, a shell made for one
 * call), or a caller that entered another namespace or root for the call (`nsenter --net`, `ip netns exec`, a
 * chroot) would leave a warm process that no later call could use: those calls exec. (Not PID 1's namespaces:
 * a runtime may run in a mount namespace of its own, and some sandboxes hide /proc/1 even from root.) */
static int settled_parent(void) {
    static const char *const kinds[] = {"mnt", "net", "pid", "user", "uts", "ipc", "cgroup"};
    char path[64], own[64], stat_text[1024];
    pid_t parent = getppid();
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)parent, kinds[i]);
        snprintf(own, sizeof own, "/proc/self/ns/%s", kinds[i]);
        if (!same_file(path, own)) return 0;
    }
    snprintf(path, sizeof path, "/proc/%d/root", (int)parent);
    if (!same_file(path, "/")) return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)parent);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, stat_text, sizeof stat_text - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    stat_text[n] = '\0';
    const char *p = strrchr(stat_text, ')'); /* the name may hold spaces: fields count from its end */
    unsigned long long start = 0;
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    if (!p || sscanf(p + 1, "%llu", &start) != 1) return 0;
    long ticks = sysconf(_SC_CLK_TCK);
    struct timespec boot;
    clock_gettime(CLOCK_BOOTTIME, &boot);
    return ticks > 0 && boot.tv_sec - (long long)(start / (unsigned long long)ticks) >= WARM_SETTLED_PARENT_S;
}

/* The warm path of one plugin call: returns when the call should exec instead. */
static void try_warm(const char *cache, const char *final, char *loader, char *library_path, char *program,
                     int in_use_fd, int argc, char **argv) {
    enum warm_mode mode = warm_mode(cache);
    if (mode == WARM_OFF || geteuid() != 0 || getuid() != 0) return; /* only root's calls: nothing in /tmp */
    char warm_dir[4200];
    snprintf(warm_dir, sizeof warm_dir, "%s/warm", final); /* made by the unpack (pack.py: WARM_DIR) */
    int build_fd = open(warm_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (build_fd < 0) {
        warm_debug("no warm/ folder in the build");
        return;
    }
    char key[17];
    warm_context_key(key);
    int sock = warm_connect(build_fd, key);
    if (sock < 0 && (mode == WARM_ON || settled_parent()) && warm_processes(build_fd) < WARM_MAX_PROCESSES) {
        int ready = warm_spawn(loader, library_path, program, in_use_fd);
        if (ready >= 0 && mode == WARM_ON) {
            char byte;
            if (read_full(ready, &byte, 1, now_ms() + WARM_START_TIMEOUT_MS) == 0) sock = warm_connect(build_fd, key);
        }
        if (ready >= 0) close(ready);
    }
    close(build_fd);
    if (sock < 0) {
        warm_debug("no warm process for this context");
        return;
    }
    warm_call(sock, argc, argv);
    close(sock);
}

#endif
