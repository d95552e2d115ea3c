/*
 * Preloaded into switchboard when it runs under valgrind 3.19 (Debian 12's): libdispatch's signal
 * thread calls sigsuspend() on a `static const` empty mask, and valgrind 3.19's wrapper of
 * rt_sigsuspend writes into the mask it is given, so valgrind crashes on the read-only page
 * ("VALGRIND INTERNAL ERROR ... SIGSEGV", syscall 130). This sigsuspend hands the kernel a copy.
 *
 * Build: cc -O2 -shared -fPIC -o sigsuspend_shim.so sigsuspend_shim.c
 * Use:   LD_PRELOAD=./sigsuspend_shim.so valgrind --tool=callgrind switchboard ...
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
