"""A minimal ASGI app for uvicorn under corral: answers "pid=<pid> worker=<CORRAL_WORKER_ID>"
after APP_DELAY_MS (in-flight requests during a reload or a drain). APP_KEEPALIVE=1 leaves the
connection open for the client's next request (else "connection: close")."""
import asyncio
import os

DELAY = int(os.environ.get("APP_DELAY_MS", "0")) / 1000.0
KEEPALIVE = os.environ.get("APP_KEEPALIVE") == "1"
BODY = ("pid=%d worker=%s" % (os.getpid(), os.environ.get("CORRAL_WORKER_ID"))).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if DELAY:
        await asyncio.sleep(DELAY)
    headers = [(b"content-length", str(len(BODY)).encode())]
    if not KEEPALIVE:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
