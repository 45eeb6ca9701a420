/*
 * Single-file launcher for the suite's frozen program.
 *
 * Why: a PyInstaller one-file executable unpacks its whole bundle into /tmp/_MEI* on EVERY exec (hundreds of
 * milliseconds) and leaves the folder behind when it is killed. The runtime execs a CNI plugin for every pod
 * operation, so this launcher unpacks the one-folder bundle appended to it ONCE, into a root-only cache keyed by
 * the bundle's content hash, and afterwards only execs the unpacked program (a stat and an execv).
 *
 * File layout (written by pack.py):   [this ELF][payload][meta][trailer]
 *   payload: entries  u8 type ('d' dir, 'f' file, 'l' symlink, 'E' end), u32 mode, u32 path length, path,
 *            u64 stored length, u64 original length, data (zlib-compressed for files; link target for links)
 *   meta:    the plugin names, each NUL-terminated, an empty name, then the VERSION answer (JSON text)
 *   trailer: 8-byte magic "CNIPYBN2", u64 payload offset, u64 payload size, u64 meta size, then 64 hex chars
 *            of the payload's SHA-256
 *
 * VERSION is answered here, from the meta block, without starting Python: the answer is static, pack.py
 * writes it from cni_common.version, and the runtime may ask it often (Go answers in ~3 ms, Python in ~25).
 *
 * Unpacking happens under an flock on <cache>/.lock into <cache>/.tmp-XXXXXX, then syncfs and an atomic rename
 * to <cache>/<hash>. A launcher killed mid-unpack leaves only a .tmp-* folder inside the cache (never in /tmp),
 * which the next unpack removes. Every run holds a shared flock on <cache>/<hash>/.in-use for its whole life
 * (the descriptor survives execv): the folders of other builds are removed at unpack time only when nobody
 * holds that lock, so an upgrade never pulls files from under a running call (with noarchive, Python opens
 * .pyc files long after it started).
 * argv is passed through unchanged: the program picks the plugin from argv[0]'s name (multi-call).
 *
 * A plugin call may instead be handed to a warm process of the same build that forks a child per call (warm.h,
 * docs/packaging.md "The warm path"); any failure before the child starts falls back to the exec below.
 *
 * Portability (docs/packaging.md): this launcher is linked statically (it needs nothing from the node), and
 * the bundle carries the dynamic loader and C library the program was linked against. The program is started
 * THROUGH that loader: execv(<build>/_internal/<BUNDLED_LOADER>, --argv0 <argv[0]> --inhibit-cache
 * --library-path <build>/_internal <build>/cni-suite args...). So the node's loader, C library and
 * /etc/ld.so.cache never take part, and nothing is put into the environment: the program's children
 * (iptables, nft, a delegate) get the runtime's environment unchanged.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define ERROR_SOURCE "cni-suite launcher"
#include "cni_error.h"
#include "warm.h"

#define MAGIC "CNIPYBN2"
#define TRAILER_SIZE (8 + 8 + 8 + 8 + 64)
#define IN_USE ".in-use"
#define PROGRAM_NAME "cni-suite"
#define DEFAULT_CACHE "/var/cache/cni-suite"
#ifndef BUNDLED_LOADER /* the file name of the bundle's dynamic loader (the program's PT_INTERP), from build.sh */
#error "compile with -DBUNDLED_LOADER='\"ld-linux-<arch>.so.N\"'"
#endif

struct bundle {
    const unsigned char *map;
    size_t map_size;
    uint64_t offset, size, meta_size;
    char key[65];
};

static uint64_t read_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t read_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void open_bundle(struct bundle *b) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) die("cannot open /proc/self/exe", strerror(errno));
    if ((size_t)st.st_size < TRAILER_SIZE) die("no bundle appended", "file too small");
    b->map_size = (size_t)st.st_size;
    b->map = mmap(NULL, b->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (b->map == MAP_FAILED) die("cannot map the executable", strerror(errno));
    const unsigned char *t = b->map + b->map_size - TRAILER_SIZE;
    if (memcmp(t, MAGIC, 8) != 0) die("no bundle appended", "trailer magic missing");
    b->offset = read_u64(t + 8);
    b->size = read_u64(t + 16);
    b->meta_size = read_u64(t + 24);
    memcpy(b->key, t + 32, 64);
    b->key[64] = '\0';
    if (b->offset + b->size + b->meta_size != b->map_size - TRAILER_SIZE) die("corrupt bundle", "bad sizes");
}

/* A plugin call (no arguments, run under a plugin's name) asking VERSION: answer from the meta block. */
static int answer_version(const struct bundle *b, int argc, char **argv) {
    const char *cmd = getenv("CNI_COMMAND");
    if (argc != 1 || !cmd) return 0;
    while (*cmd == ' ' || *cmd == '\t') cmd++;
    size_t len = strlen(cmd);
    while (len && (cmd[len - 1] == ' ' || cmd[len - 1] == '\t' || cmd[len - 1] == '\n')) len--;
    if (len != 7 || strncmp(cmd, "VERSION", 7) != 0) return 0;
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    const char *p = (const char *)b->map + b->offset + b->size, *end = p + b->meta_size;
    int known = 0;
    while (p < end && *p) {
        if (strcmp(p, name) == 0) known = 1;
        p += strlen(p) + 1;
    }
    if (!known || p >= end) return 0;
    p++; /* past the empty name */
    fwrite(p, 1, (size_t)(end - p), stdout);
    fflush(stdout);
    return 1;
}

/* The cache must belong to us and be writable by nobody else: its contents are executed. */
static void ensure_private_dir(const char *path) {
    struct stat st;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) die("cannot create cache directory", path);
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) die("cache path is not a directory", path);
    if (st.st_uid != geteuid() || (st.st_mode & 022)) die("cache directory is not private to this user", path);
}

static void cache_dir(char *out, size_t len) {
    const char *env = getenv("CNI_SUITE_CACHE_DIR");
    if (env && *env) {
        snprintf(out, len, "%s", env);
    } else if (geteuid() == 0) {
        snprintf(out, len, "%s", DEFAULT_CACHE);
    } else {
        snprintf(out, len, "/tmp/cni-suite-%u", (unsigned)geteuid());
    }
    ensure_private_dir(out);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Move a build folder out of its name first, so nobody ever finds it half-removed (even if we are killed). */
static void discard(const char *cache, const char *path) {
    char doomed[4096];
    snprintf(doomed, sizeof doomed, "%s/.tmp-XXXXXX", cache);
    int fd = mkstemp(doomed);
    if (fd < 0) return;
    close(fd);
    unlink(doomed);
    if (rename(path, doomed) == 0) remove_tree(doomed);
}

/* Under the lock nobody else is unpacking: .tmp-* folders are leftovers of killed launchers, and other
 * hashes are older builds (a process still running from one keeps its open files). */
static void prune(const char *cache, const char *keep) {
    DIR *d = opendir(cache);
    struct dirent *e;
    char path[4096];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && strncmp(e->d_name, ".tmp-", 5) != 0) continue;
        if (strcmp(e->d_name, keep) == 0) continue;
        if (e->d_name[0] != '.' && strlen(e->d_name) != 64) continue;
        snprintf(path, sizeof path, "%s/%s", cache, e->d_name);
        if (e->d_name[0] != '.') {
            char lock_path[4200];
            snprintf(lock_path, sizeof lock_path, "%s/" IN_USE, path);
            int fd = open(lock_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) { /* a call of that build is running */
                close(fd);
                continue;
            }
            discard(cache, path); /* still holding the lock: a launcher of that build now unpacks it again */
            if (fd >= 0) close(fd);
        } else {
            remove_tree(path);
        }
    }
    closedir(d);
}

static void write_file(const char *path, uint32_t mode, const unsigned char *data, uint64_t stored,
                       uint64_t original) {
    unsigned char *buf = malloc(original ? original : 1);
    uLongf out_len = (uLongf)original;
    if (!buf) die("out of memory unpacking", path);
    if (uncompress(buf, &out_len, data, (uLong)stored) != Z_OK || out_len != original)
        die("corrupt bundle entry", path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
    if (fd < 0) die("cannot create", path);
    for (uint64_t done = 0; done < original;) {
        ssize_t n = write(fd, buf + done, original - done);
        if (n < 0) die("cannot write", path);
        done += (uint64_t)n;
    }
    close(fd);
    free(buf);
}

static void unpack(const struct bundle *b, const char *dest) {
    const unsigned char *p = b->map + b->offset, *end = p + b->size;
    char path[4096], target[4096];
    while (p < end && *p != 'E') {
        if (p + 25 > end) die("corrupt bundle", "truncated entry header");
        unsigned char type = p[0];
        uint32_t mode = read_u32(p + 1), name_len = read_u32(p + 5);
        const unsigned char *name = p + 9;
        if (name_len >= 2048 || name + name_len + 16 > end) die("corrupt bundle", "truncated entry header");
        uint64_t stored = read_u64(name + name_len), original = read_u64(name + name_len + 8);
        const unsigned char *data = name + name_len + 16;
        if (stored > (uint64_t)(end - data) || memchr(name, '\0', name_len) ||
            (name_len >= 2 && memcmp(name, "..", 2) == 0) || memmem(name, name_len, "/..", 3))
            die("corrupt bundle", "bad entry");
        snprintf(path, sizeof path, "%s/%.*s", dest, (int)name_len, name);
        if (type == 'd') {
            if (mkdir(path, mode & 07777) != 0 && errno != EEXIST) die("cannot create directory", path);
        } else if (type == 'f') {
            write_file(path, mode, data, stored, original);
        } else if (type == 'l') {
            if (stored >= sizeof target) die("corrupt bundle", "link target too long");
            memcpy(target, data, stored);
            target[stored] = '\0';
            if (symlink(target, path) != 0) die("cannot create link", path);
        } else {
            die("corrupt bundle", "unknown entry type");
        }
        p = data + stored;
    }
}

static void install_bundle(const struct bundle *b, const char *cache, const char *final) {
    char lock_path[4096], tmp[4096];
    snprintf(lock_path, sizeof lock_path, "%s/.lock", cache);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) die("cannot lock the cache", lock_path);
    struct stat st;
    char in_use[4200];
    snprintf(in_use, sizeof in_use, "%s/" IN_USE, final);
    if (stat(in_use, &st) == 0) { /* another launcher finished while we waited */
        close(lock);
        return;
    }
    if (stat(final, &st) == 0) discard(cache, final); /* left incomplete by an older launcher */
    prune(cache, b->key);
    snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", cache);
    if (!mkdtemp(tmp)) die("cannot create a temporary folder in the cache", strerror(errno));
    unpack(b, tmp);
    snprintf(in_use, sizeof in_use, "%s/" IN_USE, tmp);
    int marker = open(in_use, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (marker < 0) die("cannot create", in_use);
    close(marker);
    int dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd >= 0) { /* the rename publishes the bundle: its data must be on disk first */
        syncfs(dirfd);
        close(dirfd);
    }
    if (rename(tmp, final) != 0) die("cannot publish the unpacked bundle", strerror(errno));
    close(lock);
}

/* Take the shared in-use lock of an unpacked build; the descriptor is inherited by the program (no CLOEXEC).
 * Returns it, or -1 when the build is absent or being removed by another launcher's prune. */
static int hold_in_use(const char *final) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" IN_USE, final);
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0) { /* removed between our open and our lock */
        close(fd);
        return -1;
    }
    return fd;
}

/* A CNI call under a plugin's own name (no arguments, CNI_COMMAND set): what the warm path serves. The suite's
 * other modes (inspect, install, vxlan agent) always exec. */
static int is_plugin_call(const struct bundle *b, int argc, char **argv) {
    const char *command = getenv("CNI_COMMAND");
    if (argc != 1 || !command || !*command) return 0;
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    const char *p = (const char *)b->map + b->offset + b->size, *end = p + b->meta_size;
    while (p < end && *p) {
        if (strcmp(p, name) == 0) return 1;
        p += strlen(p) + 1;
    }
    return 0;
}

/* The loader's command line: its options, the program, then our arguments after argv[0]. */
static char **loader_argv(int argc, char **argv, char *loader, char *library_path, char *program) {
    static char argv0_option[] = "--argv0", cache_option[] = "--inhibit-cache", path_option[] = "--library-path";
    char **out = calloc((size_t)argc + 8, sizeof *out);
    int n = 0;
    if (!out) die("out of memory", "loader arguments");
    out[n++] = loader;
    out[n++] = argv0_option;
    out[n++] = argc > 0 ? argv[0] : program;
    out[n++] = cache_option;
    out[n++] = path_option;
    out[n++] = library_path;
    out[n++] = program;
    for (int i = 1; i < argc; i++) out[n++] = argv[i];
    out[n] = NULL;
    return out;
}

int main(int argc, char **argv) {
    struct bundle b;
    char cache[2048], final[4096], program[4200], internal[4200], loader[4400];
    open_bundle(&b);
    if (answer_version(&b, argc, argv)) return 0;
    cache_dir(cache, sizeof cache);
    snprintf(final, sizeof final, "%s/%s", cache, b.key);
    snprintf(program, sizeof program, "%s/%s", final, PROGRAM_NAME);
    snprintf(internal, sizeof internal, "%s/_internal", final);
    snprintf(loader, sizeof loader, "%s/" BUNDLED_LOADER, internal);
    for (int attempt = 0; attempt < 3; attempt++) {
        int in_use = hold_in_use(final);
        if (in_use < 0) {
            install_bundle(&b, cache, final);
            if ((in_use = hold_in_use(final)) < 0) continue;
        }
        if (is_plugin_call(&b, argc, argv)) try_warm(cache, final, loader, internal, program, in_use, argc, argv);
        munmap((void *)b.map, b.map_size);
        execv(loader, loader_argv(argc, argv, loader, internal, program));
        die("cannot execute the unpacked program", strerror(errno));
    }
    die("cannot hold the unpacked program", "it keeps being removed by another build's launcher");
    return 1;
}
