"""A minimal WSGI app for gunicorn under corral: answers "pid=<pid> worker=<CORRAL_WORKER_ID>"
(the pid of gunicorn's own worker process) after APP_DELAY_MS."""
import os
import time

DELAY = int(os.environ.get("APP_DELAY_MS", "0")) / 1000.0


def app(environ, start_response):
    if DELAY:
        time.sleep(DELAY)
    body = ("pid=%d worker=%s" % (os.getpid(), os.environ.get("CORRAL_WORKER_ID"))).encode()
    start_response("200 OK", [("Content-Length", str(len(body))), ("Connection", "close")])
    return [body]
