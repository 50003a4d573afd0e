/* libseccomp shim; see include/nook_seccomp.h. */
#define _GNU_SOURCE
#include "nook_seccomp.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

struct nook_seccomp_filter { scmp_filter_ctx ctx; };

static int action(int kind, int errno_value, uint32_t *out) {
    switch (kind) {
    case NOOK_SC_ALLOW: *out = SCMP_ACT_ALLOW; return 0;
    case NOOK_SC_ERRNO: *out = SCMP_ACT_ERRNO((uint16_t)errno_value); return 0;
    case NOOK_SC_KILL_PROCESS: *out = SCMP_ACT_KILL_PROCESS; return 0;
    case NOOK_SC_LOG: *out = SCMP_ACT_LOG; return 0;
    case NOOK_SC_TRAP: *out = SCMP_ACT_TRAP; return 0;
    case NOOK_SC_NOTIFY: *out = SCMP_ACT_NOTIFY; return 0;
    default: return -EINVAL;
    }
}

nook_seccomp_filter *nook_seccomp_create(int kind, int errno_value) {
    uint32_t def;
    if (action(kind, errno_value, &def) != 0) { errno = EINVAL; return NULL; }
    nook_seccomp_filter *f = calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    f->ctx = seccomp_init(def);
    if (f->ctx == NULL) { free(f); errno = ENOMEM; return NULL; }
    /* nook sets no_new_privs itself, in its own place in the order. */
    seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_NNP, 0);
    return f;
}

int nook_seccomp_add_arch(nook_seccomp_filter *f, const char *arch) {
    uint32_t token = seccomp_arch_resolve_name(arch);
    if (token == 0) return -EINVAL;
    int r = seccomp_arch_add(f->ctx, token);
    return r == -EEXIST ? -EEXIST : r;
}

int nook_seccomp_add_rule(nook_seccomp_filter *f, const char *name, int kind, int errno_value,
                          const struct nook_seccomp_arg *args, int arg_count) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return -ENOENT;
    uint32_t act;
    if (action(kind, errno_value, &act) != 0) return -EINVAL;
    if (arg_count < 0 || arg_count > 6) return -EINVAL;
    struct scmp_arg_cmp cmp[6];
    for (int i = 0; i < arg_count; i++) {
        cmp[i].arg = args[i].index;
        cmp[i].op = (enum scmp_compare)args[i].op;
        cmp[i].datum_a = args[i].value;
        cmp[i].datum_b = args[i].value2;
    }
    return seccomp_rule_add_array(f->ctx, act, nr, (unsigned)arg_count, cmp);
}

int nook_seccomp_export(nook_seccomp_filter *f, void **program, size_t *instructions) {
    int fd = memfd_create("nook-seccomp", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int r = seccomp_export_bpf(f->ctx, fd);
    if (r != 0) { close(fd); return r; }
    struct stat sb;
    if (fstat(fd, &sb) != 0) { r = -errno; close(fd); return r; }
    size_t size = (size_t)sb.st_size;
    void *buf = malloc(size ? size : 1);
    if (buf == NULL) { close(fd); return -ENOMEM; }
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (char *)buf + done, size - done, (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { r = n < 0 ? -errno : -EIO; free(buf); close(fd); return r; }
        done += (size_t)n;
    }
    close(fd);
    *program = buf;
    *instructions = size / 8;
    return 0;
}

void nook_seccomp_release(nook_seccomp_filter *f) {
    if (f == NULL) return;
    seccomp_release(f->ctx);
    free(f);
}

int nook_seccomp_syscall_number(const char *name) {
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR ? -1 : nr;
}

const char *nook_seccomp_native_arch(void) {
    uint32_t arch = seccomp_arch_native();
    switch (arch) {
    case SCMP_ARCH_X86_64: return "x86_64";
    case SCMP_ARCH_AARCH64: return "aarch64";
    case SCMP_ARCH_X86: return "x86";
    case SCMP_ARCH_ARM: return "arm";
    case SCMP_ARCH_PPC64LE: return "ppc64le";
    case SCMP_ARCH_S390X: return "s390x";
    case SCMP_ARCH_RISCV64: return "riscv64";
    default: return "unknown";
    }
}

void nook_seccomp_version(char *buf, int size) {
    const struct scmp_version *v = seccomp_version();
    snprintf(buf, (size_t)size, "%u.%u.%u api %u", v->major, v->minor, v->micro, seccomp_api_get());
}

int nook_seccomp_notice_receive(int listener, struct nook_seccomp_notice *out) {
    struct seccomp_notif req;
    memset(&req, 0, sizeof req);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) return -errno;
    out->id = req.id;
    out->pid = req.pid;
    out->nr = req.data.nr;
    out->arch = req.data.arch;
    for (int i = 0; i < 6; i++) out->args[i] = req.data.args[i];
    return 0;
}

int nook_seccomp_notice_answer(int listener, uint64_t id, int error_value, int proceed) {
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    if (proceed) {
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        resp.error = -error_value;
    }
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0 ? 0 : -errno;
}

int nook_seccomp_notice_reply(int listener, uint64_t id, int64_t value) {
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    resp.val = value;
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0 ? 0 : -errno;
}

int nook_read_remote(int pid, uint64_t addr, void *buf, size_t len) {
    struct iovec local = { buf, len };
    struct iovec remote = { (void *)(uintptr_t)addr, len };
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0) return -errno;
    return (size_t)n == len ? 0 : -EFAULT;
}

int nook_write_remote(int pid, uint64_t addr, const void *buf, size_t len) {
    struct iovec local = { (void *)buf, len };
    struct iovec remote = { (void *)(uintptr_t)addr, len };
    ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n < 0) return -errno;
    return (size_t)n == len ? 0 : -EFAULT;
}

int nook_seccomp_notice_valid(int listener, uint64_t id) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

int nook_seccomp_syscall_name(uint32_t arch, int nr, char *buf, int size) {
    char *name = seccomp_syscall_resolve_num_arch(arch, nr);
    if (name == NULL) return -1;
    snprintf(buf, (size_t)size, "%s", name);
    free(name);
    return 0;
}

int nook_read_remote_string(int pid, uint64_t addr, char *buf, int size) {
    int done = 0;
    while (done < size - 1) {
        uint64_t at = addr + (uint64_t)done;
        size_t chunk = 4096 - (size_t)(at % 4096);
        if (chunk > (size_t)(size - 1 - done)) chunk = (size_t)(size - 1 - done);
        struct iovec local = { buf + done, chunk };
        struct iovec remote = { (void *)(uintptr_t)at, chunk };
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n <= 0) return done > 0 ? done : -errno;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[done + i] == 0) return done + (int)i;
        }
        done += (int)n;
    }
    buf[done] = 0;
    return done;
}
