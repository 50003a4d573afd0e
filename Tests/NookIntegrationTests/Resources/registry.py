#!/usr/bin/env python3
"""A real registry for nook's tests, on loopback only.

usage: registry.py DIR [--tls] [--htpasswd USER:PASS] [--proxy]
                       [--token anonymous|USER:PASS]

Starts Debian's docker-registry (the CNCF distribution registry) on
127.0.0.1 at a free port, with its config and storage in DIR; with --tls it
serves HTTPS with a self-signed certificate made here (DIR/ca.pem is what a
client trusts); with --htpasswd it asks for basic auth.

--proxy puts a small HTTP proxy in front of it (another free port), which
logs every request to DIR/requests.log ("METHOD PATH STATUS RANGE AUTH") and
plays faults read from DIR/faults.json at each request:
  {"corrupt": ["<hex>"]}           flip a byte in the middle of that blob
  {"truncate_once": ["<hex>"]}     send half of that blob, then close
                                   (Content-Length promises all of it)
  {"short": ["<hex>"]}             always send half, with a Content-Length
                                   that says half (a lying registry)
  {"status": {"code": 500, "count": 1, "match": "/blobs/", "retry_after": 1}}
                                   answer CODE to the next COUNT requests
                                   whose path contains MATCH
  {"redirect": true}               answer blob GETs with a 307 to a second
                                   port (blob storage), which logs whether
                                   an Authorization header reached it
  {"oversize": ["<hex>"]}          send that blob with 1 MiB of extra bytes
  {"upload_elsewhere": true}       give uploads a Location on the second
                                   port (another host, which asks for no
                                   credentials and logs what reached it)
--token makes the proxy ask for Bearer tokens (Docker's token auth) from
its own /token endpoint: anonymous, or only for USER:PASS (basic auth).

Writes DIR/ready.json ({"registry": PORT, "proxy": PORT, "storage": PORT})
when everything answers, and runs until SIGTERM, stopping the registry.
"""
import base64, http.client, http.server, json, os, secrets, signal, socket, socketserver, ssl
import subprocess, sys, threading, time, urllib.request

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def main():
    d = os.path.abspath(sys.argv[1])
    args = sys.argv[2:]
    tls = "--tls" in args
    htpasswd = args[args.index("--htpasswd") + 1] if "--htpasswd" in args else None
    proxy = "--proxy" in args
    token = args[args.index("--token") + 1] if "--token" in args else None
    os.makedirs(d + "/storage", exist_ok=True)

    config = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true",
              "storage:", "  filesystem:", f"    rootdirectory: {d}/storage", "  delete:", "    enabled: true",
              "http:", "  addr: 127.0.0.1:{port}", "  secret: nook-test-secret"]
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "/key.pem",
                        "-out", d + "/ca.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)
        os.chmod(d + "/ca.pem", 0o644)
        config += ["  tls:", f"    certificate: {d}/ca.pem", f"    key: {d}/key.pem"]
    if htpasswd:
        user, password = htpasswd.split(":", 1)
        out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout
        with open(d + "/htpasswd", "w") as f:
            f.write(out)
        config += ["auth:", "  htpasswd:", "    realm: nook-test", f"    path: {d}/htpasswd"]

    registry = None
    for _ in range(5):
        port = free_port()
        with open(d + "/config.yml", "w") as f:
            f.write("\n".join(config).replace("{port}", str(port)) + "\n")
        log = open(d + "/registry.log", "ab")
        registry = subprocess.Popen(["docker-registry", "serve", d + "/config.yml"], stdout=log, stderr=log,
                                    start_new_session=True)
        if wait_up(port, tls, registry):
            break
        registry.kill()
        registry.wait()
        registry = None
    if registry is None:
        raise SystemExit("docker-registry did not start; see " + d + "/registry.log")

    def stop(*_):
        registry.terminate()
        try:
            registry.wait(5)
        except subprocess.TimeoutExpired:
            registry.kill()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    ready = {"registry": port}
    if proxy:
        ready.update(start_proxy(d, port, token))
    with open(d + "/ready.json.tmp", "w") as f:
        json.dump(ready, f)
    os.rename(d + "/ready.json.tmp", d + "/ready.json")
    while True:
        if registry.poll() is not None:
            raise SystemExit("docker-registry exited")
        time.sleep(0.5)

def wait_up(port, tls, proc):
    for _ in range(100):
        if proc.poll() is not None:
            return False
        try:
            c = (http.client.HTTPSConnection("127.0.0.1", port, context=ssl._create_unverified_context(), timeout=1)
                 if tls else http.client.HTTPConnection("127.0.0.1", port, timeout=1))
            c.request("GET", "/v2/")
            c.getresponse().read()
            return True
        except OSError:
            time.sleep(0.1)
    return False

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

def start_proxy(d, backend, token):
    lock = threading.Lock()
    state = {"status_used": 0, "truncated": set(), "tokens": set()}

    def faults():
        try:
            with open(d + "/faults.json") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def log(method, path, status, rng, auth):
        with lock, open(d + "/requests.log", "a") as f:
            f.write(f"{method} {path} {status} {rng or '-'} {auth}\n")

    storage_port = free_port()
    proxy_port = free_port()

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else None

        def answer(self, status, headers, data, auth="-"):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
            log(self.command, self.path, status, self.headers.get("Range"), auth)

        def handle_any(self):
            body = self.body()
            auth = self.headers.get("Authorization") or ""
            kind = auth.split(" ")[0] if auth else "-"
            if self.path.startswith("/token"):
                return self.token(kind, auth)
            if token and self.path.startswith("/v2/") and self.server.server_port == proxy_port:
                if not (kind == "Bearer" and auth.split(" ", 1)[1] in state["tokens"]):
                    repo = self.path[4:].split("/manifests/")[0].split("/blobs/")[0]
                    realm = f"http://127.0.0.1:{proxy_port}/token"
                    scope = f',scope="repository:{repo}:pull"' if repo else ""
                    return self.answer(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="nook-test"{scope}'),
                                             ("Content-Type", "application/json"), ("Content-Length", "2")], b"{}", kind)
            f = faults()
            st = f.get("status")
            if st and st.get("match", "") in self.path:
                with lock:
                    use = state["status_used"] < st.get("count", 1)
                    if use:
                        state["status_used"] += 1
                if use:
                    hs = [("Content-Length", "0")]
                    if "retry_after" in st:
                        hs.append(("Retry-After", str(st["retry_after"])))
                    return self.answer(st["code"], hs, b"", kind)
            digest = self.path.rsplit("/blobs/sha256:", 1)[1] if "/blobs/sha256:" in self.path else None
            if digest and self.command == "GET" and f.get("redirect") and self.server.server_port == proxy_port:
                loc = f"http://127.0.0.1:{storage_port}{self.path}"
                return self.answer(307, [("Location", loc), ("Content-Length", "0")], b"", kind)
            status, headers, data = self.forward(body)
            if digest and self.command == "GET" and status in (200, 206):
                if digest in f.get("corrupt", []):
                    data = bytearray(data)
                    data[len(data) // 2] ^= 0xFF
                    data = bytes(data)
                if digest in f.get("oversize", []):
                    data = data + bytes(1 << 20)
                    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                    headers.append(("Content-Length", str(len(data))))
                if digest in f.get("short", []):
                    data = data[: len(data) // 2]
                    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                    headers.append(("Content-Length", str(len(data))))
                once = digest in f.get("truncate_once", [])
                with lock:
                    first = once and digest not in state["truncated"]
                    if first:
                        state["truncated"].add(digest)
                if first:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    log(self.command, self.path, "truncated", self.headers.get("Range"), kind)
                    self.close_connection = True
                    return
            self.answer(status, headers, data, kind)

        def token(self, kind, auth):
            if token != "anonymous":
                want = "Basic " + base64.b64encode(token.encode()).decode()
                if auth != want:
                    return self.answer(401, [("Content-Length", "0")], b"", kind)
            t = secrets.token_hex(16)
            with lock:
                state["tokens"].add(t)
            data = json.dumps({"token": t, "expires_in": 300}).encode()
            self.answer(200, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))], data, kind)

        def forward(self, body):
            c = http.client.HTTPConnection("127.0.0.1", backend, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
            c.request(self.command, self.path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            out = []
            for k, v in r.getheaders():
                if k.lower() in ("connection", "transfer-encoding"):
                    continue
                if k.lower() == "content-length":
                    if self.command == "HEAD":
                        out.append((k, v))
                    continue
                if k.lower() == "location":
                    v = v.replace(f"127.0.0.1:{backend}", f"127.0.0.1:{proxy_port}")
                    if faults().get("upload_elsewhere") and "/blobs/uploads/" in v:
                        v = v.replace(f"127.0.0.1:{proxy_port}", f"127.0.0.1:{storage_port}")
                out.append((k, v))
            if self.command != "HEAD":
                out.append(("Content-Length", str(len(data))))
            return r.status, out, data

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any

    for port in (proxy_port, storage_port):
        server = Server(("127.0.0.1", port), Proxy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return {"proxy": proxy_port, "storage": storage_port}

if __name__ == "__main__":
    main()
