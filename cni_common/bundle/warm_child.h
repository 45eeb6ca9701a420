/*
 * A warm child's first steps, in C (runner.c includes it; cni_common/warm/child.py calls it): read the
 * launcher's request, check that the caller runs as this process does, and take on what an exec'd plugin would
 * have inherited from it that a fork does not give. Nothing of the call has run yet: any refusal makes the
 * launcher exec the plugin instead.
 *
 * Why C: a warm child shares every page with the warm process until it writes it, and each Python object a
 * step makes or touches writes one (its reference count, the allocator's pool). In Python these steps took
 * ~0.6 ms and ~150 page copies of every call (docs/packaging.md, "Session 9"); here they are the system calls
 * alone. Python keeps the rest of the call: 'A', 'G' and taking the caller's place (child.py).
 *
 * What must be equal, read from the kernel (/proc/PID, not the caller's word), in this order (the refusal names
 * the first that differs): the namespaces (mnt net pid user uts ipc cgroup time; a kind the kernel lacks is
 * equal), the root directory, the ids, supplementary groups, capability sets, no_new_privs and seccomp mode
 * (/proc/PID/status), the LSM label, and securebits, which /proc does not show and the launcher sends. What is
 * taken, as an exec'd child inherits it: every cgroup (joined: the kernel allows it), every resource limit, the
 * OOM score adjustment, the nice value and the CPU affinity. The warm process reads its own facts once
 * (warm_child_prepare); a forked child still has them when it compares.
 */
#include <sys/stat.h>

#define WC_MAGIC "CNIW"
#define WC_PROTOCOL 1u
#define WC_HEADER_SIZE 28       /* magic, protocol, umask, securebits, argc, envc, length: "<4sIIIIII" */
#define WC_MAX_STRINGS (256u << 20)  /* far above what execve takes; a larger request is refused (then: exec) */
#define WC_REQUEST_TIMEOUT_MS 2000   /* a launcher sends its request right after connecting */
#define WC_MAX_HIERARCHIES 64

static const char *const wc_namespaces[] = {"mnt", "net", "pid", "user", "uts", "ipc", "cgroup", "time"};
#define WC_NAMESPACES (sizeof wc_namespaces / sizeof wc_namespaces[0])
static const char *const wc_status_fields[] = {"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd",
                                               "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"};
#define WC_STATUS_FIELDS (sizeof wc_status_fields / sizeof wc_status_fields[0])

struct wc_text {  /* a /proc file, whole; NULL data when it could not be read (then: empty) */
    char *data;
    size_t len;
};

struct wc_span {
    const char *at;
    size_t len;
};

/* [from, to) without the bytes of ``strip`` (``count`` of them: '\0' may be one) at either end. */
static struct wc_span wc_trim(const char *from, const char *to, const char *strip, size_t count) {
    while (from < to && memchr(strip, *from, count)) from++;
    while (to > from && memchr(strip, to[-1], count)) to--;
    return (struct wc_span){from, (size_t)(to - from)};
}

struct wc_facts {
    struct { dev_t dev; ino_t ino; } identity[WC_NAMESPACES + 1];  /* the namespaces, then the root */
    struct wc_text status;
    struct wc_span field[WC_STATUS_FIELDS];
    struct wc_text lsm_text;
    struct wc_span lsm;
};

struct wc_mount {  /* a cgroup hierarchy of this mount namespace: context.cgroup_mounts() */
    char *controllers, *root, *point;
};

static struct {
    struct wc_facts own;
    int own_bits;
    struct wc_mount mounts[WC_MAX_HIERARCHIES];
    size_t nmounts;
    int ready;
} WC = {.own_bits = -1};

static void wc_read(const char *path, struct wc_text *out) {
    size_t cap = 4096;
    out->data = NULL;
    out->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char *data = malloc(cap);
    size_t len = 0;
    while (data) {
        if (len == cap) {
            char *more = realloc(data, cap * 2);
            if (!more) break;
            data = more;
            cap *= 2;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;  /* unreadable (attr/current without an LSM: EINVAL): empty */
        if (n == 0) {
            out->data = data;
            out->len = len;
            data = NULL;
            break;
        }
        len += (size_t)n;
    }
    free(data);
    close(fd);
}

/* The value of each compared line of /proc/PID/status ("Name:<spaces or tabs>value<spaces or tabs>"); a line
 * that is missing is empty, one that appears twice counts the last time. */
static void wc_parse_status(const struct wc_text *status, struct wc_span *field) {
    const char *p = status->data, *end = p ? p + status->len : NULL;
    for (size_t i = 0; i < WC_STATUS_FIELDS; i++) field[i] = (struct wc_span){"", 0};
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            for (size_t i = 0; i < WC_STATUS_FIELDS; i++) {
                size_t n = strlen(wc_status_fields[i]);
                if ((size_t)(colon - p) == n && memcmp(p, wc_status_fields[i], n) == 0) {
                    field[i] = wc_trim(colon + 1, eol, " \t", 2);
                }
            }
        }
        p = eol + 1;
    }
}

static void wc_facts_of(const char *proc, struct wc_facts *facts) {
    char path[64];
    struct stat info;
    for (size_t i = 0; i <= WC_NAMESPACES; i++) {
        if (i < WC_NAMESPACES) snprintf(path, sizeof path, "%s/ns/%s", proc, wc_namespaces[i]);
        else snprintf(path, sizeof path, "%s/root", proc);
        if (stat(path, &info) == 0) {
            facts->identity[i].dev = info.st_dev;
            facts->identity[i].ino = info.st_ino;
        } else {
            facts->identity[i].dev = 0;  /* a kind this kernel lacks: equal on both sides */
            facts->identity[i].ino = 0;
        }
    }
    snprintf(path, sizeof path, "%s/status", proc);
    wc_read(path, &facts->status);
    wc_parse_status(&facts->status, facts->field);
    snprintf(path, sizeof path, "%s/attr/current", proc);
    wc_read(path, &facts->lsm_text);
    const char *label = facts->lsm_text.data ? facts->lsm_text.data : "";
    facts->lsm = wc_trim(label, label + facts->lsm_text.len, "\0\n", 2);
}

static void wc_facts_free(struct wc_facts *facts) {
    free(facts->status.data);
    free(facts->lsm_text.data);
}

static int wc_span_equal(struct wc_span a, struct wc_span b) {
    return a.len == b.len && memcmp(a.at, b.at, a.len) == 0;
}

/* The first fact in which the caller differs from us, or NULL. */
static const char *wc_mismatch(const struct wc_facts *peer, int peer_bits, char *name, size_t size) {
    const struct wc_facts *own = &WC.own;
    for (size_t i = 0; i <= WC_NAMESPACES; i++)
        if (own->identity[i].dev != peer->identity[i].dev || own->identity[i].ino != peer->identity[i].ino) {
            if (i < WC_NAMESPACES) snprintf(name, size, "ns:%s", wc_namespaces[i]);
            else snprintf(name, size, "root");
            return name;
        }
    for (size_t i = 0; i < WC_STATUS_FIELDS; i++)
        if (!wc_span_equal(own->field[i], peer->field[i])) {
            snprintf(name, size, "status:%s", wc_status_fields[i]);
            return name;
        }
    if (!wc_span_equal(own->lsm, peer->lsm)) return "lsm";
    if (WC.own_bits < 0 || WC.own_bits != peer_bits) return "securebits";  /* ours unknown: refuse */
    return NULL;
}

/* /proc/PID/cgroup as (controllers, path) pairs; controllers sorted and joined by ',' (the keys of
 * context.cgroup_mounts: '' for cgroup2). A hierarchy named twice keeps its first place and its last path.
 * Returns the count, -1 when the text does not fit. */
struct wc_cgroup {
    char controllers[256];
    struct wc_span path;
};

static int wc_compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int wc_hierarchies(const struct wc_text *text, struct wc_cgroup *out, size_t max) {
    const char *p = text->data, *end = p ? p + text->len : NULL;
    size_t count = 0;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *first = memchr(p, ':', (size_t)(eol - p));
        const char *second = first ? memchr(first + 1, ':', (size_t)(eol - first - 1)) : NULL;
        if (second) {
            char list[256], *names[32];
            size_t n = (size_t)(second - first - 1), k = 0;
            if (n >= sizeof list) return -1;
            memcpy(list, first + 1, n);
            list[n] = '\0';
            for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
                if (k == sizeof names / sizeof names[0]) return -1;
                names[k++] = name;
            }
            qsort(names, k, sizeof names[0], wc_compare_names);
            char key[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < k; i++) {
                int wrote = snprintf(key + used, sizeof key - used, "%s%s", i ? "," : "", names[i]);
                if (wrote < 0 || (size_t)wrote >= sizeof key - used) return -1;
                used += (size_t)wrote;
            }
            struct wc_span path = {second + 1, (size_t)(eol - second - 1)};
            size_t at = 0;
            while (at < count && strcmp(out[at].controllers, key) != 0) at++;
            if (at == count) {
                if (count == max) return -1;
                memcpy(out[count].controllers, key, used + 1);
                count++;
            }
            out[at].path = path;
        }
        p = eol + 1;
    }
    return (int)count;
}

static const struct wc_cgroup *wc_find_cgroup(const struct wc_cgroup *list, int count, const char *key) {
    for (int i = 0; i < count; i++)
        if (strcmp(list[i].controllers, key) == 0) return &list[i];
    return NULL;
}

/* Move this process into every cgroup of the caller it is not in yet. Returns NULL, or what failed. */
static const char *wc_join_cgroups(pid_t peer_pid, char *why, size_t size) {
    char path[PATH_MAX * 2 + 64];
    struct wc_text own_text, peer_text;
    struct wc_cgroup own[WC_MAX_HIERARCHIES], peer[WC_MAX_HIERARCHIES];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)peer_pid);
    wc_read("/proc/self/cgroup", &own_text);
    wc_read(path, &peer_text);
    int nown = wc_hierarchies(&own_text, own, WC_MAX_HIERARCHIES);
    int npeer = wc_hierarchies(&peer_text, peer, WC_MAX_HIERARCHIES);
    const char *failed = NULL;
    if (npeer <= 0 || nown != npeer) failed = "cgroup hierarchies";
    for (int i = 0; !failed && i < npeer; i++)
        if (!wc_find_cgroup(own, nown, peer[i].controllers)) failed = "cgroup hierarchies";
    for (int i = 0; !failed && i < npeer; i++) {
        const struct wc_cgroup *mine = wc_find_cgroup(own, nown, peer[i].controllers);
        struct wc_span want = peer[i].path;
        if (wc_span_equal(mine->path, want)) continue;
        const char *label = peer[i].controllers[0] ? peer[i].controllers : "v2";
        const struct wc_mount *mount = NULL;
        for (size_t m = 0; m < WC.nmounts; m++)
            if (strcmp(WC.mounts[m].controllers, peer[i].controllers) == 0) mount = &WC.mounts[m];
        if (!mount) {
            snprintf(why, size, "cgroup %.255s not mounted", label);
            failed = why;
            break;
        }
        size_t root_len = strlen(mount->root);
        int at_root = strcmp(mount->root, "/") == 0;
        if (!at_root && !(want.len >= root_len && memcmp(want.at, mount->root, root_len) == 0 &&
                          (want.len == root_len || want.at[root_len] == '/'))) {
            snprintf(why, size, "cgroup %.255s outside its mount", label);
            failed = why;
            break;
        }
        size_t skip = at_root ? 0 : root_len;
        int wrote = snprintf(path, sizeof path, "%s%.*s/cgroup.procs", mount->point, (int)(want.len - skip),
                             want.at + skip);
        if (wrote < 0 || (size_t)wrote >= sizeof path) {
            snprintf(why, size, "cgroup %.255s: path too long", label);
            failed = why;
            break;
        }
        char pid_text[24];
        int len = snprintf(pid_text, sizeof pid_text, "%d", (int)getpid());
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, pid_text, (size_t)len) != len) {
            snprintf(why, size, "cgroup %.255s: %.200s", label, strerror(errno));
            failed = why;
        }
        if (fd >= 0) close(fd);
    }
    free(own_text.data);
    free(peer_text.data);
    return failed;
}

/* A /proc number file's value without surrounding white space; -1 when unreadable. */
static int wc_read_value(const char *path, char *out, size_t size) {
    struct wc_text text;
    wc_read(path, &text);
    if (!text.data) return -1;
    struct wc_span value = wc_trim(text.data, text.data + text.len, " \n\t", 3);
    int ok = value.len < size;
    if (ok) {
        memcpy(out, value.at, value.len);
        out[value.len] = '\0';
    }
    free(text.data);
    return ok ? 0 : -1;
}

static int wc_same_affinity(pid_t peer_pid) {
    for (size_t cpus = 1024; cpus <= (1u << 20); cpus *= 2) {
        cpu_set_t *want = CPU_ALLOC(cpus), *have = CPU_ALLOC(cpus);
        size_t size = CPU_ALLOC_SIZE(cpus);
        int rc = -1;
        if (want && have) {
            if (sched_getaffinity(peer_pid, size, want) == 0 && sched_getaffinity(0, size, have) == 0)
                rc = CPU_EQUAL_S(size, want, have) || sched_setaffinity(0, size, want) == 0 ? 0 : -1;
            else if (errno == EINVAL) rc = 1;  /* more CPUs than this mask holds: a larger one */
        }
        CPU_FREE(want);
        CPU_FREE(have);
        if (rc <= 0) return rc;
    }
    errno = EINVAL;
    return -1;
}

/* Every limit, the OOM score, the nice value and the affinity of the caller. Returns 0, or -1 with errno. */
static int wc_take_limits(pid_t peer_pid) {
    for (int limit = 0; limit < RLIM_NLIMITS; limit++) {
        struct rlimit want, have;
        if (prlimit(peer_pid, limit, NULL, &want) != 0 || getrlimit(limit, &have) != 0) return -1;
        if ((want.rlim_cur != have.rlim_cur || want.rlim_max != have.rlim_max) && setrlimit(limit, &want) != 0)
            return -1;
    }
    char path[64], want[32], have[32];
    snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)peer_pid);
    if (wc_read_value(path, want, sizeof want) != 0 ||
        wc_read_value("/proc/self/oom_score_adj", have, sizeof have) != 0)
        return -1;
    if (strcmp(want, have) != 0) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        ssize_t wrote = fd >= 0 ? write(fd, want, strlen(want)) : -1;
        int saved = errno;
        if (fd >= 0) close(fd);
        errno = saved;
        if (wrote != (ssize_t)strlen(want)) return -1;
    }
    errno = 0;
    int nice_want = getpriority(PRIO_PROCESS, (id_t)peer_pid);
    if (nice_want == -1 && errno) return -1;
    int nice_have = getpriority(PRIO_PROCESS, 0);
    if (nice_have == -1 && errno) return -1;
    if (nice_want != nice_have && setpriority(PRIO_PROCESS, 0, nice_want) != 0) return -1;
    return wc_same_affinity(peer_pid);
}

/* Read exactly len bytes, waiting at most WC_REQUEST_TIMEOUT_MS for each piece. 0, or -1. */
static int wc_receive(int fd, void *buffer, size_t len) {
    size_t got = 0;
    while (got < len) {
        struct pollfd wait_for = {.fd = fd, .events = POLLIN};
        int ready = poll(&wait_for, 1, WC_REQUEST_TIMEOUT_MS);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return -1;
        ssize_t n = recv(fd, (char *)buffer + got, len - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

/* argv (a list) and the environment (a dict: the first of two equal names, as getenv() finds it) from the
 * request's NUL-terminated strings, decoded as os.fsdecode does. NULL with a Python error, or with none when
 * the counts do not match (a malformed request). */
static PyObject *wc_decode(const char *strings, size_t len, uint32_t argc, uint32_t envc) {
    PyObject *argv = PyList_New(0), *env = PyDict_New(), *result = NULL;
    const char *p = strings, *end = strings + len;
    uint32_t index = 0;
    if (!argv || !env) goto done;
    while (p < end) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (!nul) break;  /* bytes after the last NUL are no string */
        if (index < argc) {
            PyObject *item = PyUnicode_DecodeFSDefaultAndSize(p, nul - p);
            if (!item || PyList_Append(argv, item) != 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
        } else {
            const char *sep = memchr(p, '=', (size_t)(nul - p));
            if (sep) {
                PyObject *name = PyUnicode_DecodeFSDefaultAndSize(p, sep - p);
                PyObject *value = name ? PyUnicode_DecodeFSDefaultAndSize(sep + 1, nul - sep - 1) : NULL;
                int rc = value ? PyDict_SetDefault(env, name, value) ? 0 : -1 : -1;
                Py_XDECREF(name);
                Py_XDECREF(value);
                if (rc != 0) goto done;
            }
        }
        index++;
        p = nul + 1;
    }
    if ((uint64_t)index == (uint64_t)argc + envc && argc >= 1) result = Py_BuildValue("(OO)", argv, env);
done:
    Py_XDECREF(argv);
    Py_XDECREF(env);
    return result;
}

/* warm_child_prepare(mounts): in the warm process, once: its own facts, its securebits, and where each cgroup
 * hierarchy is mounted ({controllers: (root, point)}, context.cgroup_mounts()). */
static PyObject *native_warm_child_prepare(PyObject *self, PyObject *args) {
    PyObject *mounts, *key, *value;
    Py_ssize_t at = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!:warm_child_prepare", &PyDict_Type, &mounts)) return NULL;
    if (WC.ready) {
        PyErr_SetString(PyExc_RuntimeError, "warm_child_prepare: already prepared");
        return NULL;
    }
    while (PyDict_Next(mounts, &at, &key, &value)) {
        const char *controllers, *root, *point;
        if (WC.nmounts == WC_MAX_HIERARCHIES) break;  /* never on Linux: a dozen controllers */
        if (!PyArg_Parse(key, "s", &controllers) || !PyArg_ParseTuple(value, "ss", &root, &point)) return NULL;
        struct wc_mount *mount = &WC.mounts[WC.nmounts];
        mount->controllers = strdup(controllers);
        mount->root = strdup(root);
        mount->point = strdup(point);
        if (!mount->controllers || !mount->root || !mount->point) return PyErr_NoMemory();
        WC.nmounts++;
    }
    wc_facts_of("/proc/self", &WC.own);
    WC.own_bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    WC.ready = 1;
    Py_RETURN_NONE;
}

/* warm_child_accept(fd): in a warm child, the call's connection: its request, the checks, the caller's
 * context taken. Returns (umask, argv, env), or a str saying why the call is refused. */
static PyObject *native_warm_child_accept(PyObject *self, PyObject *args) {
    int fd;
    unsigned char header[WC_HEADER_SIZE];
    char name[64], why[PATH_MAX + 64];
    (void)self;
    if (!PyArg_ParseTuple(args, "i:warm_child_accept", &fd)) return NULL;
    if (!WC.ready) return PyUnicode_FromString("not prepared");
    if (wc_receive(fd, header, sizeof header) != 0) return PyUnicode_FromString("no request");
    if (memcmp(header, WC_MAGIC, 4) != 0 || warm_le32(header + 4) != WC_PROTOCOL)
        return PyUnicode_FromString("another protocol");
    uint32_t umask_bits = warm_le32(header + 8), securebits = warm_le32(header + 12), argc = warm_le32(header + 16),
             envc = warm_le32(header + 20), length = warm_le32(header + 24);
    if (length > WC_MAX_STRINGS) return PyUnicode_FromString("request too large");
    char *strings = malloc(length ? length : 1);
    if (!strings) return PyErr_NoMemory();
    if (wc_receive(fd, strings, length) != 0) {
        free(strings);
        return PyUnicode_FromString("truncated request");
    }
    PyObject *request = wc_decode(strings, length, argc, envc);
    free(strings);
    if (!request) return PyErr_Occurred() ? NULL : PyUnicode_FromString("malformed request");

    struct ucred peer;
    socklen_t size = sizeof peer;
    const char *refusal = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 || peer.pid <= 0 || peer.uid != geteuid()) {
        refusal = "caller not visible or not root";
    } else {
        char proc[32];
        struct wc_facts facts;
        snprintf(proc, sizeof proc, "/proc/%d", (int)peer.pid);
        wc_facts_of(proc, &facts);
        const char *differs = wc_mismatch(&facts, (int)securebits, name, sizeof name);
        wc_facts_free(&facts);
        if (differs) {
            snprintf(why, sizeof why, "caller's %s differs", differs);
            refusal = why;
        } else if ((refusal = wc_join_cgroups(peer.pid, why, sizeof why)) == NULL && wc_take_limits(peer.pid) != 0) {
            snprintf(why, sizeof why, "cannot take the caller's limits: %s", strerror(errno));
            refusal = why;
        }
    }
    if (refusal) {
        Py_DECREF(request);
        return PyUnicode_FromString(refusal);
    }
    PyObject *result = Py_BuildValue("(IOO)", umask_bits, PyTuple_GET_ITEM(request, 0), PyTuple_GET_ITEM(request, 1));
    Py_DECREF(request);
    return result;
}
