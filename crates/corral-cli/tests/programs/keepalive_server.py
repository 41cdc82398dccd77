"""A keep-alive HTTP/1.1 server that knows nothing of corral: systemd's LISTEN_FDS only.

Accepts on every inherited listener (fds 3..3+LISTEN_FDS) and keeps each connection open
between requests until the client closes it, answering "pid=<pid> worker=<CORRAL_WORKER_ID>".
Exits 0 on SIGTERM. Options (environment):
  SERVER_FORK  N > 0: pre-fork N children that serve (as gunicorn and uvicorn --workers do);
               this process only waits for them and passes SIGTERM on.
"""
import ctypes, os, selectors, signal, socket, sys

def serve():
    n = int(os.environ["LISTEN_FDS"])
    sel = selectors.DefaultSelector()
    for fd in range(3, 3 + n):
        ls = socket.socket(fileno=fd)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, None)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    bufs = {}
    me = ("pid=%d worker=%s" % (os.getpid(), os.environ.get("CORRAL_WORKER_ID"))).encode()
    while not stop:
        try:
            events = sel.select(0.05)
        except InterruptedError:
            continue
        for key, _ in events:
            s = key.fileobj
            if key.data is None:
                try:
                    c, _ = s.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # a sibling took it
                c.setblocking(False)
                bufs[c] = b""
                sel.register(c, selectors.EVENT_READ, "conn")
                continue
            try:
                chunk = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(s)
                del bufs[s]
                s.close()
                continue
            bufs[s] += chunk
            while b"\r\n\r\n" in bufs[s]:
                _, bufs[s] = bufs[s].split(b"\r\n\r\n", 1)
                s.setblocking(True)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(me), me))
                s.setblocking(False)
    sys.exit(0)

def main():
    assert os.environ.get("LISTEN_PID") == str(os.getpid()), "LISTEN_PID is not my pid"
    kids = int(os.environ.get("SERVER_FORK", "0"))
    if kids <= 0:
        serve()
    pids = []
    for _ in range(kids):
        pid = os.fork()
        if pid == 0:
            # Die with this process even when it is SIGKILLed (a test's guard kills corral,
            # whose workers die of their own PDEATHSIG; the flag is not inherited by fork).
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() == 1:
                os._exit(0)
            serve()
        pids.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: [os.kill(p, signal.SIGTERM) for p in pids])
    for p in pids:
        while True:
            try:
                os.waitpid(p, 0)
                break
            except InterruptedError:
                continue
    sys.exit(0)

main()
