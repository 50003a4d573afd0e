"""Runs a command on a fresh pseudo-terminal and scripts what a person at
that terminal would do, for nook's terminal tests.

usage: ptyrun.py ROWS COLS STEPS_JSON -- COMMAND...
STEPS is a list of ["sleep", secs], ["wait", text, secs] (until the terminal
has shown text, at most secs), ["write", text], ["resize", rows, cols],
["ctrl-c"]. Prints everything the command wrote to the terminal, then a
last line "exit=N" (N is 128+signal for a signal death), and "stty-same" or
"stty-changed" saying whether the terminal's settings were restored.
"""
import fcntl, json, os, pty, select, signal, struct, sys, termios, time

def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

rows, cols, steps = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
command = sys.argv[sys.argv.index("--") + 1:]
master, slave = pty.openpty()
winsize(master, rows, cols)
before = termios.tcgetattr(slave)
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.execvp(command[0], command)

output = b""
def pump(timeout):
    global output
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            return
        r, _, _ = select.select([master], [], [], left)
        if not r:
            return
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        output += data

for step in steps:
    if step[0] == "sleep":
        pump(step[1])
    elif step[0] == "wait":
        end = time.time() + step[2]
        while step[1].encode() not in output and time.time() < end:
            pump(0.05)
    elif step[0] == "write":
        os.write(master, step[1].encode())
    elif step[0] == "resize":
        winsize(master, step[1], step[2])
    elif step[0] == "ctrl-c":
        os.write(master, b"\x03")

deadline = time.time() + 30
status = None
while time.time() < deadline:
    pump(0.1)
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        break
if status is None:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    print("TIMEOUT")
pump(0.2)
after = termios.tcgetattr(slave)
sys.stdout.write(output.decode(errors="replace").replace("\r\n", "\n"))
code = os.waitstatus_to_exitcode(status)
print("\nexit=%d" % (code if code >= 0 else 128 - code))
print("stty-same" if before == after else "stty-changed")
