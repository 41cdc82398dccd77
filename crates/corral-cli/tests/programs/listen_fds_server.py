"""A server that knows nothing of corral: systemd's LISTEN_FDS protocol only.

Serves HTTP/1.0 on the first inherited socket, one request per connection, answering
"pid=<pid> worker=<CORRAL_WORKER_ID>". On SIGTERM it finishes the request in hand, stops
accepting and exits 0 (the drain every real server does). Options (environment):
  SERVER_DELAY_MS   sleep this long inside each request (in-flight requests during a drain)
  SERVER_NOTIFY     "ready": send READY=1 (and STATUS=) to NOTIFY_SOCKET once serving
  SERVER_READY_AFTER_MS  wait this long before serving (and before READY=1)
  SERVER_GROW_KB    keep this many more KiB (touched, so resident) after each request: a
                    leak that --recycle-max-rss must catch
  SERVER_CHILD_GROW_KB  fork a child at start that, from the first request served on,
                    keeps this many more KiB every 10 ms (up to 256 MiB) until its parent
                    is gone: a pre-forked process that grows, which --recycle-max-rss must
                    count in its worker's tree
  SERVER_CHILD_GROW_ONCE  a path: only the worker that creates this file forks that child
                    (its replacement stays small)
  SERVER_PROBE_DIR  once serving, open a health port of its own (127.0.0.1, port 0) and
                    write its number to DIR/<pid>.port (for tcp_probe.py, a --ready-cmd)
"""
import os, select, signal, socket, sys, time

def sd_notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if path.startswith("@"):
        path = "\0" + path[1:]
    s.sendto(msg.encode(), path)
    s.close()

def grow_child(step, go):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.close(3)  # serves nothing: the listener is the parent's
    parent = os.getppid()
    leak = []
    growing = False
    while os.getppid() == parent:
        if not growing:
            # The parent writes a byte once it has served a request.
            growing = bool(select.select([go], [], [], 0.01)[0])
        elif len(leak) * step < (256 << 20):
            leak.append(b"x" * step)
            time.sleep(0.01)
        else:
            time.sleep(0.01)
    os._exit(0)

def main():
    assert os.environ.get("LISTEN_PID") == str(os.getpid()), (
        "LISTEN_PID %r is not my pid %d" % (os.environ.get("LISTEN_PID"), os.getpid()))
    n = int(os.environ["LISTEN_FDS"])
    assert n >= 1, "no listener"
    names = os.environ.get("LISTEN_FDNAMES", "")
    child_grow = int(os.environ.get("SERVER_CHILD_GROW_KB", "0")) * 1024
    once = os.environ.get("SERVER_CHILD_GROW_ONCE")
    if child_grow and once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            child_grow = 0
    go = None
    if child_grow:
        r, go = os.pipe()
        if os.fork() == 0:
            os.close(go)
            grow_child(child_grow, r)
        os.close(r)
    lsock = socket.socket(fileno=3)
    lsock.setblocking(False)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    delay = int(os.environ.get("SERVER_DELAY_MS", "0")) / 1000.0
    time.sleep(int(os.environ.get("SERVER_READY_AFTER_MS", "0")) / 1000.0)
    probe_dir = os.environ.get("SERVER_PROBE_DIR")
    if probe_dir:
        health = socket.socket()
        health.bind(("127.0.0.1", 0))
        health.listen(16)  # the kernel completes probe handshakes; nothing to accept
        tmp = os.path.join(probe_dir, "%d.tmp" % os.getpid())
        with open(tmp, "w") as f:
            f.write(str(health.getsockname()[1]))
        os.rename(tmp, os.path.join(probe_dir, "%d.port" % os.getpid()))
    if os.environ.get("SERVER_NOTIFY") == "ready":
        sd_notify("READY=1\nSTATUS=serving on %d fds (%s)" % (n, names))
    me = "pid=%d worker=%s" % (os.getpid(), os.environ.get("CORRAL_WORKER_ID"))
    grow = int(os.environ.get("SERVER_GROW_KB", "0")) * 1024
    leak = []
    while not stop:
        try:
            r, _, _ = select.select([lsock], [], [], 0.05)
        except InterruptedError:
            continue
        if not r:
            continue
        try:
            conn, _ = lsock.accept()
        except (BlockingIOError, InterruptedError):
            continue  # another worker took it
        conn.setblocking(True)
        conn.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if delay:
                time.sleep(delay)
            if grow:
                leak.append(b"x" * grow)
            body = me.encode()
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))
            if go is not None:
                os.write(go, b"g")
                os.close(go)
                go = None
        except OSError:
            pass
        finally:
            conn.close()
    sd_notify("STOPPING=1")
    sys.exit(0)

main()
