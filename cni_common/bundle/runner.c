/*
 * The frozen program's own start: a static Python interpreter that runs the bundle's entry script.
 *
 * It takes the place of PyInstaller's bootloader in the one-folder bundle (build.sh puts it there as
 * "cni-suite"); PyInstaller still decides and collects what the bundle holds. Why: before the first line of
 * ours, PyInstaller's bootloader execs itself a second time (to set LD_LIBRARY_PATH for the bundle's
 * libraries), loads a position-independent libpython.so and runs its bootstrap modules (which import ctypes).
 * Every plugin call paid that, ~17 ms of a ~55 ms minimal call, and more on a real ADD: PIC code runs the
 * whole interpreter slower (measured in bench/README.md).
 *
 * This program is the distribution's interpreter itself, linked the way /usr/bin/python3.11 is: the static
 * libpython3.11.a (non-PIC, so the executable is non-PIE, as the distribution's), its symbols exported for the
 * extension modules in lib-dynload. Its DT_RPATH (deliberately not DT_RUNPATH, which would apply to our own
 * NEEDED entries only) is $ORIGIN/_internal: the dynamic linker uses an executable's RPATH for every library
 * loaded into the process, so the extension modules find the bundle's libssl, libffi... without
 * LD_LIBRARY_PATH, without a second exec, and children (iptables, nft, a delegate) get the runtime's
 * environment untouched.
 *
 * The launcher starts this program through the bundle's own dynamic loader (_internal/ld-linux-*.so.*, with
 * --inhibit-cache and --argv0), so the bundle's C library is used whatever the node has (docs/packaging.md).
 * /proc/self/exe then names that loader: the program's own folder comes from the dynamic linker instead
 * (dlinfo RTLD_DI_ORIGIN, the $ORIGIN of the RPATH), so no variable or extra argument carries it, and no
 * child ever sees one.
 *
 * Python starts isolated: no PYTHON* variables, no user or site directories, no bytecode written, sys.path is
 * the bundle alone, argv as given (the multi-call name in argv[0] survives), UTF-8 mode (the CNI JSON is UTF-8
 * whatever locale the runtime runs in), sys.frozen set, and a built-in module _cni_suite (setns(), unshare(),
 * set_name(), the warm process's per-call loop: warm_loop.h, a warm child's first steps: warm_child.h). The script
 * is the compiled plugins/__main__.py inside the bundle.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define ERROR_SOURCE "cni-suite runner"
#include "cni_error.h"

#define PROGRAM_NAME "cni-suite"
#define ENTRY_SCRIPT "plugins/__main__.pyc"
#define LIB_DYNLOAD "python" PYTHON_VERSION_DIR "/lib-dynload"
#define PYTHON_VERSION_DIR STRINGIFY(PY_MAJOR_VERSION) "." STRINGIFY(PY_MINOR_VERSION)
#define STRINGIFY(x) STRINGIFY_(x)
#define STRINGIFY_(x) #x

/* Built-in module _cni_suite: setns(fd, nstype). Python 3.11's os module has no setns (3.12 has), and the
 * fallback through ctypes costs ~5 ms of imports in every call that enters a namespace (cni_common/netns.py). */
static PyObject *native_setns(PyObject *self, PyObject *args) {
    int fd, nstype, rc;
    (void)self;
    if (!PyArg_ParseTuple(args, "ii:setns", &fd, &nstype)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = setns(fd, nstype);
    Py_END_ALLOW_THREADS
    if (rc != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* unshare(flags), for the calling thread: host-device makes its scratch namespace with it (cni_common/netns.py).
 * Python 3.11's os module has none either, and ctypes is ~5 ms of imports per call, or memory every warm call's
 * fork copies. */
static PyObject *native_unshare(PyObject *self, PyObject *args) {
    int flags;
    (void)self;
    if (!PyArg_ParseTuple(args, "i:unshare", &flags)) return NULL;
    if (unshare(flags) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* set_name(name): the process name (ps, /proc/PID/comm), which a warm child sets to its plugin's
 * (cni_common/warm/child.py); Python has no prctl. */
static PyObject *native_set_name(PyObject *self, PyObject *args) {
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s:set_name", &name)) return NULL;
    if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

#include "warm_loop.h"
#include "warm_child.h"

static PyMethodDef native_methods[] = {
    {"setns", native_setns, METH_VARARGS, "setns(fd, nstype): move the calling thread into a namespace."},
    {"unshare", native_unshare, METH_VARARGS, "unshare(flags): new namespaces for the calling thread."},
    {"set_name", native_set_name, METH_VARARGS, "set_name(name): prctl(PR_SET_NAME)."},
    {"warm_loop_start", native_warm_loop_start, METH_VARARGS, "The warm process's loop: its descriptors."},
    {"warm_loop_run", native_warm_loop_run, METH_VARARGS, "Serve calls until an event for Python."},
    {"warm_loop_last_call", native_warm_loop_last_call, METH_NOARGS, "When the last call started or ended."},
    {"warm_loop_stop", native_warm_loop_stop, METH_NOARGS, "Let the spare go."},
    {"warm_child_prepare", native_warm_child_prepare, METH_VARARGS, "What a warm child compares its caller with."},
    {"warm_child_accept", native_warm_child_accept, METH_VARARGS, "A warm child's request, checks and adoption."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_cni_suite", "What the suite needs from libc that Python 3.11 lacks.", -1,
    native_methods, NULL, NULL, NULL, NULL,
};

static PyObject *init_native_module(void) { return PyModule_Create(&native_module); }

static void check(PyStatus status) {
    if (PyStatus_Exception(status)) die("cannot start Python", status.err_msg ? status.err_msg : "unknown error");
}

static void add_search_path(PyConfig *config, const char *internal, const char *sub) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s%s%s", internal, *sub ? "/" : "", sub);
    wchar_t *wide = Py_DecodeLocale(path, NULL);
    if (!wide) die("cannot decode a path", path);
    check(PyWideStringList_Append(&config->module_search_paths, wide));
    PyMem_RawFree(wide);
}

/* The folder this program was loaded from, as the dynamic linker resolved it for $ORIGIN: right whether the
 * program was exec'd directly or through a loader (where /proc/self/exe names the loader). */
static void own_folder(char *out) {
    char origin[PATH_MAX];
    void *self = dlopen(NULL, RTLD_LAZY);
    if (!self || dlinfo(self, RTLD_DI_ORIGIN, origin) != 0) die("cannot find the program's folder", dlerror());
    if (!realpath(origin, out)) die("cannot resolve the program's folder", strerror(errno));
}

/* The process name (ps, top, /proc/PID/comm) is the plugin's, as for a Go plugin, not the loader's. */
static void name_process(const char *argv0) {
    const char *base = strrchr(argv0, '/');
    prctl(PR_SET_NAME, base ? base + 1 : argv0, 0, 0, 0);
}

int main(int argc, char **argv) {
    char folder[PATH_MAX], executable[PATH_MAX + 16], internal[PATH_MAX + 16], script[PATH_MAX + 64];
    own_folder(folder);
    if (argc > 0) name_process(argv[0]);
    snprintf(executable, sizeof executable, "%s/" PROGRAM_NAME, folder);
    snprintf(internal, sizeof internal, "%s/_internal", folder);
    snprintf(script, sizeof script, "%s/" ENTRY_SCRIPT, internal);

    if (PyImport_AppendInittab("_cni_suite", init_native_module) != 0) die("cannot start Python", "inittab");
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    check(Py_PreInitialize(&preconfig));

    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;
    config.write_bytecode = 0;
    config.pathconfig_warnings = 0;
    config.parse_argv = 0;
    config.safe_path = 1;
    config.install_signal_handlers = 1;
    check(PyConfig_SetBytesString(&config, &config.executable, executable));
    check(PyConfig_SetBytesString(&config, &config.home, internal));
    check(PyConfig_SetBytesString(&config, &config.run_filename, script));
    config.module_search_paths_set = 1;
    add_search_path(&config, internal, "");
    add_search_path(&config, internal, LIB_DYNLOAD);
    check(PyConfig_SetBytesArgv(&config, argc, argv));
    check(Py_InitializeFromConfig(&config));
    PyConfig_Clear(&config);
    /* The convention of freezing tools: code that behaves differently once frozen asks sys.frozen
     * (cni_common/invoke.py runs a delegate of the same build in-process). */
    if (PySys_SetObject("frozen", Py_True) != 0) die("cannot start Python", "cannot set sys.frozen");
    return Py_RunMain();
}
