/*
 * The warm process's per-call loop, in C (runner.c includes it; cni_common/warm/server.py drives it).
 *
 * Why C: the warm process forks a child for every call, so after each fork every page it writes is copied.
 * Its loop in Python (accept, hand the connection to the spare, fork the next spare, reap, report) wrote ~140
 * pages per call for the reference counts and frames of the objects it touched: ~0.6 ms of CPU per call on the
 * test VM, more than the fork itself (docs/packaging.md). This loop writes its stack and a small table.
 *
 * What it does is what server.py's loop did; the policy stays in Python: the loop returns to it when no call is
 * in flight and its deadline passes (idle exit, upgrade and switch checks) and, in a forked child, with the
 * child's descriptor (the spare's control socket, or the call's connection when no spare was
 * ready). Protocol bytes (warm.h): 'F' on each accepted connection as its child gets it, 'C' + the connection
 * (SCM_RIGHTS) to the spare, 'X' + exit code or 'S' + signal number to the launcher when a child ends, unless
 * the child already told the launcher itself (its pid on the "done" socket, child.report_exit).
 *
 * fork() here is libc's alone, without os.fork()'s at-fork hooks: the ones the standard library registers
 * (threading's, logging's, random's) make locks and thread records usable again in the child of a process whose
 * other threads may have held them, and cost a fresh child ~225 page copies, a quarter of a host-local call's.
 * This process has one thread (serve() checks before it serves), so no lock is held by a thread the fork leaves
 * behind; each child reseeds random itself (child.start), and a unit test lists the hooks the preload registers.
 * The GIL stays held: the child's one thread is the thread that holds it. SIGCHLD is a C handler writing to a
 * pipe, so no Python code runs per call; a child gets SIG_DFL back at once.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

struct warm_call {
    pid_t pid;
    int conn;       /* the launcher's connection */
    int reported;   /* the child sent its exit code itself: its launcher's end is no reason to kill it */
    int abandoned;  /* killed because its launcher went away */
};

static struct {
    int listener, status, done, wake[2];
    char *status_prefix;  /* the status line's fixed part: '{"pid": ..., ' (server.py) */
    int refused_code, not_started_code;
    int want_spare;
    pid_t spare_pid;
    int spare_control;
    struct warm_call *calls;
    size_t ncalls, cap;
    double last_call;
    long served, refused;
    double children_cpu;
    long max_rss_kib;
} W = {.listener = -1, .status = -1, .done = -1, .wake = {-1, -1}, .spare_control = -1};

static double warm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* time.monotonic()'s clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void warm_on_sigchld(int sig) {
    int saved = errno;
    char byte = 0;
    (void)sig;
    if (write(W.wake[1], &byte, 1) < 0) { /* full: a wake-up is already pending */ }
    errno = saved;
}

/* In a child just forked: drop what only the loop uses, so the call holds no other call's connection. */
static void warm_forget_in_child(void) {
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGCHLD, &dfl, NULL);
    for (size_t i = 0; i < W.ncalls; i++) close(W.calls[i].conn);
    W.ncalls = 0;
    if (W.spare_control >= 0) close(W.spare_control);
    W.spare_control = -1;
    W.spare_pid = 0;
    close(W.wake[0]);
    close(W.wake[1]);
    W.wake[0] = W.wake[1] = -1;
}

static void warm_send_reply(int conn, char kind, int32_t value) {
    uint32_t bits = (uint32_t)value;
    unsigned char reply[5] = {(unsigned char)kind, bits & 0xff, (bits >> 8) & 0xff, (bits >> 16) & 0xff,
                              bits >> 24};  /* little-endian, as warm.h reads it, on s390x too */
    if (send(conn, reply, sizeof reply, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* the launcher went away */ }
}

static struct warm_call *warm_find(pid_t pid) {
    for (size_t i = 0; i < W.ncalls; i++)
        if (W.calls[i].pid == pid) return &W.calls[i];
    return NULL;
}

/* A 32-bit number in little-endian order, as the launcher (warm.h) and a child (child.py) send them, on s390x too. */
static uint32_t warm_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void warm_take_reports(void) {
    unsigned char message[4];
    for (;;) {
        ssize_t n = recv(W.done, message, sizeof message, MSG_DONTWAIT);
        if (n < 0) return;  /* none left */
        if (n != (ssize_t)sizeof message) continue;
        pid_t pid = (pid_t)warm_le32(message);  /* child.report_exit's struct.pack("<i", pid) */
        struct warm_call *call = warm_find(pid);
        if (call) call->reported = 1;
    }
}

static void warm_reap(void) {
    for (;;) {
        int status;
        struct rusage usage;
        pid_t pid = wait4(-1, &status, WNOHANG, &usage);
        if (pid <= 0) return;
        struct warm_call *call = warm_find(pid);
        if (!call) {
            if (pid == W.spare_pid) {  /* killed while it waited: the next call forks one */
                close(W.spare_control);
                W.spare_control = -1;
                W.spare_pid = 0;
            }
            continue;
        }
        W.children_cpu += (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                          (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
        if (usage.ru_maxrss > W.max_rss_kib) W.max_rss_kib = usage.ru_maxrss;
        if (WIFSIGNALED(status)) {
            warm_send_reply(call->conn, 'S', WTERMSIG(status));
            if (!call->abandoned) W.served++;  /* killed for its gone launcher: maybe never started */
        } else {
            int code = WEXITSTATUS(status);
            warm_send_reply(call->conn, 'X', code);
            if (code == W.refused_code) W.refused++;
            else if (code != W.not_started_code) W.served++;
        }
        close(call->conn);
        *call = W.calls[--W.ncalls];
        W.last_call = warm_now();
    }
}

static void warm_caller_gone(struct warm_call *call) {
    warm_take_reports();  /* a child's report precedes its launcher's exit: a reported call is done */
    if (call->reported) return;
    call->abandoned = 1;
    kill(call->pid, SIGKILL);  /* reaped (and reported to nobody) when SIGCHLD arrives */
}

/* One status query, answered here: the JSON line written into the new connection's empty buffer (never blocks),
 * nothing read, so a slow client cannot hold the loop; and no Python runs, so a query, which bench/ makes around
 * every call it measures, copies no page of the interpreter's. */
static void warm_answer_status(void) {
    int conn = accept4(W.status, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) return;
    struct rusage own;
    getrusage(RUSAGE_SELF, &own);
    double cpu = W.children_cpu + (double)own.ru_utime.tv_sec + (double)own.ru_utime.tv_usec / 1e6 +
                 (double)own.ru_stime.tv_sec + (double)own.ru_stime.tv_usec / 1e6;
    char line[4096];
    int n = snprintf(line, sizeof line,
                     "%s\"calls\": %ld, \"refused\": %ld, \"in_flight\": %zu, \"cpu_seconds\": %.6f, "
                     "\"max_call_rss_kib\": %ld}\n",
                     W.status_prefix, W.served, W.refused, W.ncalls, cpu, W.max_rss_kib);
    if (n > 0 && (size_t)n < sizeof line && send(conn, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* the client went away */
    }
    close(conn);
}

/* Fork the next call's child now, while this call runs. Returns 1 in the spare. */
static int warm_fork_spare(void) {
    int pair[2];
    W.want_spare = 0;  /* one attempt per call: a fork that fails is tried again at the next call, not in a loop */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 0;
    pid_t pid = fork();
    if (pid < 0) {
        close(pair[0]);
        close(pair[1]);
        return 0;
    }
    if (pid == 0) {
        close(pair[0]);
        warm_forget_in_child();
        W.spare_control = pair[1];  /* returned to Python, which owns it from now on */
        return 1;
    }
    close(pair[1]);
    W.spare_pid = pid;
    W.spare_control = pair[0];
    return 0;
}

/* Give conn to the spare; its pid, or 0 when there is none (or it is gone). */
static pid_t warm_hand_to_spare(int conn) {
    if (W.spare_pid == 0) return 0;
    pid_t pid = W.spare_pid;
    char byte = 'C';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &conn, sizeof(int));
    ssize_t sent = sendmsg(W.spare_control, &msg, MSG_NOSIGNAL);
    close(W.spare_control);
    W.spare_control = -1;
    W.spare_pid = 0;
    return sent == 1 ? pid : 0;
}

static int warm_add_call(pid_t pid, int conn) {
    if (W.ncalls == W.cap) {
        size_t cap = W.cap ? W.cap * 2 : 64;
        struct warm_call *calls = realloc(W.calls, cap * sizeof *calls);
        if (!calls) return -1;
        W.calls = calls;
        W.cap = cap;
    }
    W.calls[W.ncalls++] = (struct warm_call){.pid = pid, .conn = conn};
    return 0;
}

/* One accepted call. Returns the connection in a child forked for it (no spare was ready), else -1. */
static int warm_accept(void) {
    int conn = accept4(W.listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) return -1;
    W.last_call = warm_now();
    /* The launcher's sign that we are alive, sent before the child gets the connection, so that it always
     * precedes what the child writes; one byte into an empty buffer never blocks. */
    if (send(conn, "F", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
        close(conn);
        return -1;
    }
    pid_t pid = warm_hand_to_spare(conn);
    if (pid == 0) {
        pid = fork();
        if (pid < 0) {
            close(conn);  /* the launcher sees the connection end before 'A' and execs */
            return -1;
        }
        if (pid == 0) {
            warm_forget_in_child();
            return conn;
        }
    }
    if (warm_add_call(pid, conn) != 0) {  /* no memory for the table: the call cannot be watched */
        kill(pid, SIGKILL);
        close(conn);
    }
    W.want_spare = 1;
    return -1;
}

/* warm_loop_start(listener, status, done, refused_code, not_started_code, status_prefix) */
static PyObject *native_warm_loop_start(PyObject *self, PyObject *args) {
    const char *prefix;
    (void)self;
    if (!PyArg_ParseTuple(args, "iiiiis:warm_loop_start", &W.listener, &W.status, &W.done, &W.refused_code,
                          &W.not_started_code, &prefix))
        return NULL;
    if (strlen(prefix) > 2048) return PyErr_Format(PyExc_ValueError, "status prefix too long");
    W.status_prefix = strdup(prefix);
    if (!W.status_prefix) return PyErr_NoMemory();
    if (pipe2(W.wake, O_CLOEXEC | O_NONBLOCK) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    struct sigaction on_child = {.sa_handler = warm_on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigemptyset(&on_child.sa_mask);
    if (sigaction(SIGCHLD, &on_child, NULL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    W.last_call = warm_now();
    W.want_spare = 1;
    Py_RETURN_NONE;
}

/* warm_loop_run(deadline) -> (event, fd): serve until the monotonic deadline passes with no call in flight
 * ("tick", -1), or, in a forked child, ("spare", control) / ("call", connection). */
static PyObject *native_warm_loop_run(PyObject *self, PyObject *args) {
    double deadline;
    (void)self;
    if (!PyArg_ParseTuple(args, "d:warm_loop_run", &deadline)) return NULL;
    struct pollfd *fds = NULL;
    size_t nfds_cap = 0;
    PyObject *result = NULL;
    for (;;) {
        if (W.want_spare && W.spare_pid == 0 && warm_fork_spare()) {
            result = Py_BuildValue("(si)", "spare", W.spare_control);
            break;
        }
        size_t need = 4 + W.ncalls;
        if (need > nfds_cap) {
            struct pollfd *grown = realloc(fds, need * sizeof *fds);
            if (!grown) {
                PyErr_NoMemory();
                break;
            }
            fds = grown;
            nfds_cap = need;
        }
        fds[0] = (struct pollfd){.fd = W.listener, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = W.status, .events = POLLIN};
        fds[2] = (struct pollfd){.fd = W.wake[0], .events = POLLIN};
        fds[3] = (struct pollfd){.fd = W.done, .events = POLLIN};
        size_t n = 4;
        for (size_t i = 0; i < W.ncalls; i++)  /* watched until reported or killed */
            fds[n++] = (struct pollfd){.fd = W.calls[i].reported || W.calls[i].abandoned ? -1 : W.calls[i].conn,
                                       .events = POLLRDHUP};
        int timeout = -1;
        if (W.ncalls == 0) {
            double left = deadline - warm_now();
            if (left <= 0) {
                result = Py_BuildValue("(si)", "tick", -1);
                break;
            }
            timeout = (int)(left * 1000) + 1;
        }
        if (poll(fds, n, timeout) < 0) {
            if (errno == EINTR && PyErr_CheckSignals() == 0) continue;  /* SIGCHLD: the pipe has its byte */
            if (errno != EINTR) PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
        if (fds[2].revents) {
            char drain[64];
            while (read(W.wake[0], drain, sizeof drain) > 0) {}
            warm_reap();
        }
        if (fds[3].revents) warm_take_reports();
        /* Connections by pid, since reaping moved the table: a call reaped above has nothing left to watch. */
        for (size_t i = 4; i < n; i++) {
            if (!fds[i].revents || fds[i].fd < 0) continue;
            for (size_t j = 0; j < W.ncalls; j++)
                if (W.calls[j].conn == fds[i].fd && !W.calls[j].reported && !W.calls[j].abandoned) {
                    warm_caller_gone(&W.calls[j]);
                    break;
                }
        }
        if (fds[0].revents) {
            int conn = warm_accept();
            if (conn >= 0) {
                result = Py_BuildValue("(si)", "call", conn);
                break;
            }
        }
        if (fds[1].revents) warm_answer_status();
    }
    free(fds);
    return result;
}

/* warm_loop_last_call() -> the monotonic time of the last call's start or end (the idle clock) */
static PyObject *native_warm_loop_last_call(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyFloat_FromDouble(W.last_call);
}

/* warm_loop_stop(): the spare sees the end of its socket and exits. */
static PyObject *native_warm_loop_stop(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    if (W.spare_control >= 0) close(W.spare_control);
    W.spare_control = -1;
    Py_RETURN_NONE;
}
