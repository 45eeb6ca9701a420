/*
 * Single-file launcher for the suite's frozen program.
 *
 * Why: a PyInstaller one-file executable unpacks its whole bundle into /tmp/_MEI* on EVERY exec (hundreds of
 * milliseconds) and leaves the folder behind when it is killed. The runtime execs a CNI plugin for every pod
 * operation, so this launcher unpacks the one-folder bundle appended to it ONCE, into a root-only cache keyed by
 * the bundle's content hash, and afterwards only execs the unpacked program (a stat and an execv).
 *
 * File layout (written by pack.py):   [this ELF][payload][trailer]
 *   payload: entries  u8 type ('d' dir, 'f' file, 'l' symlink, 'E' end), u32 mode, u32 path length, path,
 *            u64 stored length, u64 original length, data (zlib-compressed for files; link target for links)
 *   trailer: 8-byte magic "CNIPYBND", u64 payload offset, u64 payload size, 64 hex chars of its SHA-256
 *
 * Unpacking happens under an flock on <cache>/.lock into <cache>/.tmp-XXXXXX, then syncfs and an atomic rename
 * to <cache>/<hash>. A launcher killed mid-unpack leaves only a .tmp-* folder inside the cache (never in /tmp),
 * which the next unpack removes. Other hashes (older builds) are removed at that point as well.
 * argv is passed through unchanged: the program picks the plugin from argv[0]'s name (multi-call).
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

#define MAGIC "CNIPYBND"
#define TRAILER_SIZE (8 + 8 + 8 + 64)
#define PROGRAM_NAME "cni-suite"
#define DEFAULT_CACHE "/var/cache/cni-suite"

struct bundle {
    const unsigned char *map;
    size_t map_size;
    uint64_t offset, size;
    char key[65];
};

static void die(const char *what, const char *detail) {
    /* stdout belongs to the CNI protocol: report as a CNI error (code 999) there, details on stderr too. */
    fprintf(stderr, "cni-suite launcher: %s: %s\n", what, detail);
    printf("{\"cniVersion\": \"1.1.0\", \"code\": 999, \"msg\": \"cni-suite launcher: %s\", "
           "\"details\": \"%s\"}\n", what, detail);
    fflush(stdout);
    exit(1);
}

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
    memcpy(b->key, t + 24, 64);
    b->key[64] = '\0';
    if (b->offset + b->size > b->map_size - TRAILER_SIZE) die("corrupt bundle", "payload out of range");
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
        remove_tree(path);
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
        uint64_t stored = read_u64(name + name_len), original = read_u64(name + name_len + 8);
        const unsigned char *data = name + name_len + 16;
        if (data + stored > end || name_len >= 2048 || memchr(name, '\0', name_len) ||
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
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) die("cannot lock the cache", lock_path);
    struct stat st;
    if (stat(final, &st) == 0) { /* another launcher finished while we waited */
        close(lock);
        return;
    }
    prune(cache, b->key);
    snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", cache);
    if (!mkdtemp(tmp)) die("cannot create a temporary folder in the cache", strerror(errno));
    unpack(b, tmp);
    int dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd >= 0) { /* the rename publishes the bundle: its data must be on disk first */
        syncfs(dirfd);
        close(dirfd);
    }
    if (rename(tmp, final) != 0) die("cannot publish the unpacked bundle", strerror(errno));
    close(lock);
}

int main(int argc, char **argv) {
    (void)argc;
    struct bundle b;
    char cache[2048], final[4096], program[4200];
    open_bundle(&b);
    cache_dir(cache, sizeof cache);
    snprintf(final, sizeof final, "%s/%s", cache, b.key);
    snprintf(program, sizeof program, "%s/%s", final, PROGRAM_NAME);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (access(program, X_OK) != 0) install_bundle(&b, cache, final);
        munmap((void *)b.map, b.map_size);
        execv(program, argv);
        if (errno != ENOENT) break;
        open_bundle(&b); /* pruned by a newer build between our check and exec: unpack again */
    }
    die("cannot execute the unpacked program", strerror(errno));
    return 1;
}
