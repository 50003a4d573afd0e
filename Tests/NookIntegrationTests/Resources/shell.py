"""Runs an interactive bash on a fresh pseudo-terminal and types lines into
it, for nook's job-control tests. usage: shell.py DIR LINE... ; a line
"^Z" types Ctrl-Z, "^C" Ctrl-C, "sleep:N" waits N seconds, "wait:TEXT"
waits until the terminal has shown TEXT (at most 60 s: a slow host, such as
the VM tier's emulated one, takes seconds to start a sandbox). Prints what
the terminal showed."""
import os, pty, select, signal, sys, time

directory, lines = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    # As a login terminal starts: no signal blocked or ignored (the test
    # runner's own mask and dispositions would otherwise reach bash's jobs).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGHUP,
                signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(directory)
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])

screen = b""
def pump(seconds):
    global screen
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                screen += os.read(fd, 65536)
            except OSError:
                return

pump(0.5)
for line in lines:
    if line.startswith("sleep:"):
        pump(float(line[6:]))
    elif line.startswith("wait:"):
        end = time.time() + 60
        while line[5:].encode() not in screen and time.time() < end:
            pump(0.05)
    elif line == "^Z":
        os.write(fd, b"\x1a")
        pump(0.5)
    elif line == "^C":
        os.write(fd, b"\x03")
        pump(0.5)
    else:
        os.write(fd, line.encode() + b"\n")
        pump(0.5)
os.write(fd, b"kill -9 %1 2>/dev/null; exit\n")
pump(1.0)
try:
    os.kill(pid, 9)
except OSError:
    pass
sys.stdout.write(screen.decode(errors="replace").replace("\r\n", "\n"))
