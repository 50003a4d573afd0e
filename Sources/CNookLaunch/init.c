/* The sandbox's pid 1: opens the terminal, forks the payload, then reaps
 * every process that is orphaned to it and forwards signals to the payload,
 * and exits with the payload's status (the kernel then kills whatever is
 * left in the pid namespace). See tini for why pid 1 must reap. */
#include "internal.h"
#include "nook_sys.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* And every real-time signal (systemd inside takes SIGRTMIN+3 as halt).
 * TSTP, TTIN and TTOU too: sent to the init, they did nothing (a fresh
 * try); STOP and CONT, which no process can catch, nook sends to every
 * process itself. */
static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM,
                                 SIGTSTP, SIGTTIN, SIGTTOU, 0 };

static void ignore_signal(int sig) { (void)sig; }

/* A pty from the sandbox's own devpts: the master goes to the host, which
 * relays it; the slave becomes the payload's controlling terminal. */
static int open_terminal(struct child_state *st) {
    const struct nook_launch_config *cfg = st->cfg;
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    int unlock = 0;
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_row = cfg->rows;
    ws.ws_col = cfg->cols;
    if (ioctl(master, TIOCSPTLCK, &unlock) != 0 || ioctl(master, TIOCSWINSZ, &ws) != 0) {
        int err = errno;
        close(master);
        errno = err;
        return -1;
    }
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        int err = errno;
        close(master);
        errno = err;
        return -1;
    }
    int r = nook_send_fd(st->sync_fd, master);
    close(master);
    if (r < 0) {
        close(slave);
        errno = -r;
        return -1;
    }
    st->pty_slave = slave;
    return 0;
}

/* /proc/1/cmdline and /proc/1/environ show this copy of the host's memory;
 * the caller's arguments and environment must not be readable in there. */
static void wipe_memory(const struct nook_launch_config *cfg) {
    static const char name[] = "nook-init";
    if (cfg->arg_end > cfg->arg_start) {
        size_t len = cfg->arg_end - cfg->arg_start;
        memset((void *)cfg->arg_start, 0, len);
        if (len > sizeof name) memcpy((void *)cfg->arg_start, name, sizeof name);
    }
    if (cfg->env_end > cfg->env_start) memset((void *)cfg->env_start, 0, cfg->env_end - cfg->env_start);
}

_Noreturn void run_init(struct child_state *st) {
    const struct nook_launch_config *cfg = st->cfg;
    if (cfg->terminal && open_terminal(st) != 0) {
        report(st->error_fd, NOOK_STEP_PTY, 0, errno, 0, NULL, 0);
        _exit(125);
    }

    /* The payload starts with default dispositions; SIGCHLD must not be
     * ignored here or the kernel would reap for us and waitpid would fail. */
    signal(SIGCHLD, SIG_DFL);
    long payload = k_fork();
    if (payload < 0) {
        report(st->error_fd, NOOK_STEP_FORK, 0, errno, 0, NULL, 0);
        _exit(125);
    }
    if (payload == 0) run_payload(st);

    /* From here on the init holds nothing of the host but the sync socket. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; fd++) {
        if (devnull >= 0) dup2(devnull, fd); else close(fd);
    }
    int sync_fd = st->sync_fd;
    syscall(SYS_close_range, 3, sync_fd - 1, 0);
    syscall(SYS_close_range, sync_fd + 1, ~0U, 0);
    wipe_memory(cfg);
    prctl(PR_SET_NAME, (unsigned long)"nook-init", 0, 0, 0);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (int i = 0; forwarded[i]; i++) {
        sigaddset(&set, forwarded[i]);
        signal(forwarded[i], ignore_signal);
    }
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++) {
        sigaddset(&set, sig);
        signal(sig, ignore_signal);
    }
    sigprocmask(SIG_BLOCK, &set, NULL);

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            /* A terminal's signals (si_code SI_KERNEL) reach this process
             * only because it shares nook's process group; the payload got
             * them from the terminal too, or nook passes them on. */
            if (info.si_code == SI_KERNEL) continue;
            if (info.si_code == SI_QUEUE && info.si_value.sival_int == NOOK_KILL_GROUP) {
                kill((pid_t)-payload, SIGKILL);
                kill((pid_t)payload, SIGKILL);
                continue;
            }
            int group = info.si_code == SI_QUEUE && info.si_value.sival_int == NOOK_FORWARD_GROUP;
            if (!group || kill((pid_t)-payload, sig) != 0) kill((pid_t)payload, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t done = waitpid(-1, &status, WNOHANG);
            if (done <= 0) break;
            if (done != payload) continue;
            struct nook_exit_record rec;
            int code;
            if (WIFSIGNALED(status)) {
                rec.kind = WCOREDUMP(status) ? NOOK_EXIT_CORE : NOOK_EXIT_SIGNAL;
                rec.code = WTERMSIG(status);
                code = 128 + rec.code;
            } else {
                rec.kind = NOOK_EXIT_CODE;
                rec.code = WEXITSTATUS(status);
                code = rec.code;
            }
            send(sync_fd, &rec, sizeof rec, MSG_NOSIGNAL);
            if (cfg->hold_exit) {
                /* Keep the cgroup populated until the host has read it. */
                char release;
                ssize_t n;
                do { n = read(sync_fd, &release, 1); } while (n < 0 && errno == EINTR);
            }
            _exit(code);
        }
    }
}
