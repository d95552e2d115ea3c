"""TLS on `tls://` listeners, from the outside, with real peers only.

Certificates are made at test time with the `openssl` command in a temporary directory: a test
CA, a server certificate for `localhost` / 127.0.0.1, an agent's client certificate with DNS and
URI SANs, a client certificate from another CA, a renewed server certificate (for SIGHUP) and an
expired one. The peers are `openssl s_client` and Python's `ssl` module (both on the system's
OpenSSL); the gateway is a `switchboard serve --listen tls://127.0.0.1:0 ...` process whose
address is read from its `listening on tls://...` line on stderr.

Every wait is for an event: a reply, an end of file, a log line, a process exit.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sbwire import EXIT_TIMEOUT, REPLY_TIMEOUT, Closed, Gateway, LineClient, jline, req, switchboard_bin

HOST = "127.0.0.1"
SERVER_NAME = "localhost"

# The agent certificate's names: its subject's CN and its SANs.
AGENT_CN = "agent-7"
AGENT_DNS = "agent-7.agents.example"
AGENT_URI = "spiffe://example.test/agent/agent-7"
AGENT_SUBJECT = f"CN={AGENT_CN},O=Example Agents"  # RFC 2253: the last RDN (here CN) first

# TLS 1.2 suites the gateway offers: ECDHE key exchange, AEAD ciphers only.
TLS12_AEAD = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")

_TLS_LISTEN_RE = re.compile(r"listening on tls://(\S+):(\d+)")


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    @property
    def serial(self) -> int:
        out = _openssl("x509", "-in", self.cert, "-noout", "-serial")
        return int(out.strip().split("=", 1)[1], 16)


def _openssl(*args) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


class PKI:
    """A throw-away CA and the certificates the tests need, made with the openssl command."""

    def __init__(self, directory: Path):
        self.dir = directory
        self._serial = 0x1000
        self.ca = self._ca("ca", "/CN=Switchboard Test CA")
        self.other_ca = self._ca("other-ca", "/CN=Some Other CA")
        self.server = self.issue("server", "/O=Switchboard Tests/CN=localhost", self.ca,
                                 sans="DNS:localhost,IP:127.0.0.1", usage="serverAuth")
        self.renewed = self.issue("server-renewed", "/O=Switchboard Tests Renewed/CN=localhost", self.ca,
                                  sans="DNS:localhost,IP:127.0.0.1", usage="serverAuth")
        self.agent = self.issue("agent", f"/O=Example Agents/CN={AGENT_CN}", self.ca,
                                sans=f"DNS:{AGENT_DNS},URI:{AGENT_URI}", usage="clientAuth")
        self.operator = self.issue("operator", "/O=Example Operators/CN=operator", self.ca, usage="clientAuth")
        self.stranger = self.issue("stranger", "/CN=agent-7", self.other_ca, usage="clientAuth")
        # A CN hidden inside another attribute's value: RFC 2253 prints it as `O=x\,CN=impostor`.
        self.sneaky = self.issue("sneaky", "/O=x,CN=impostor/CN=agent-9", self.ca, usage="clientAuth")
        self.expired = self._expired("expired", "/CN=localhost")

    def _key(self, name: str) -> Path:
        key = self.dir / f"{name}.key"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        return key

    def _next_serial(self) -> str:
        self._serial += 1
        return hex(self._serial)

    def _ca(self, name: str, subject: str) -> Cert:
        key = self._key(name)
        cert = self.dir / f"{name}.pem"
        _openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2", "-subj", subject,
                 "-set_serial", self._next_serial(),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return Cert(cert, key)

    def issue(self, name: str, subject: str, ca: Cert, sans: str | None = None, usage: str = "clientAuth") -> Cert:
        key = self._key(name)
        csr = self.dir / f"{name}.csr"
        cert = self.dir / f"{name}.pem"
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", f"extendedKeyUsage={usage}"]
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", subject)
        _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", self._next_serial(),
                 "-days", "2", "-sha256", "-extfile", ext, "-out", cert)
        return Cert(cert, key)

    def _expired(self, name: str, subject: str) -> Cert:
        # `openssl x509 -req` cannot backdate; `openssl ca` takes explicit dates.
        key = self._key(name)
        csr = self.dir / f"{name}.csr"
        cert = self.dir / f"{name}.pem"
        db = self.dir / f"{name}-index.txt"
        db.write_text("")
        (self.dir / f"{name}-serial").write_text("2000\n")
        config = self.dir / f"{name}-ca.cnf"
        config.write_text(
            "[ca]\ndefault_ca = expired\n"
            f"[expired]\ndatabase = {db}\nnew_certs_dir = {self.dir}\nserial = {self.dir / f'{name}-serial'}\n"
            "default_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n")
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", subject)
        _openssl("ca", "-batch", "-config", config, "-cert", self.ca.cert, "-keyfile", self.ca.key, "-in", csr,
                 "-out", cert, "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext")
        return Cert(cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed (Debian package: openssl)")
    return PKI(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- the gateway


class TLSGateway(Gateway):
    """A gateway whose tls:// listener address is learnt from its log."""

    address: tuple = None

    def start_tls(self) -> "TLSGateway":
        self.start(expected_listeners=0)
        line = self.wait_log(r"listening on tls://")
        m = _TLS_LISTEN_RE.search(line)
        assert m, f"cannot read the address in {line!r}"
        self.address = (m.group(1).strip("[]"), int(m.group(2)))
        return self

    @property
    def url(self) -> str:
        return f"tls://{self.address[0]}:{self.address[1]}"


@pytest.fixture
def tls_gateway(sb_bin, tmp_path, pki):
    """Factory: tls_gateway(*serve_args) or tls_gateway(tls={...config keys...}) -> TLSGateway.

    Without arguments: the test server certificate, no client authentication. At teardown each
    gateway still running gets SIGTERM and must exit 0.
    """
    started = []

    def start(*args: str, tls: dict | None = None) -> TLSGateway:
        if tls is not None:
            section = {"certificate": str(pki.server.cert), "key": str(pki.server.key), **tls}
            config = tmp_path / f"gateway-{len(started)}.yaml"
            config.write_text(
                "listen: [\"tls://127.0.0.1:0\"]\ntls:\n"
                + "".join(f"  {k}: {_yaml_scalar(v)}\n" for k, v in section.items()))
            args = ("--config", str(config), *args)
        elif not any(a.startswith("--tls-cert") for a in args):
            args = ("--listen", "tls://127.0.0.1:0", "--tls-cert", str(pki.server.cert),
                    "--tls-key", str(pki.server.key), *args)
        gw = TLSGateway(list(args))
        started.append(gw)
        return gw.start_tls()

    yield start

    failures = []
    for gw in started:
        running = gw.proc.poll() is None
        try:
            rc = gw.stop()
        except AssertionError as e:
            gw.kill()
            failures.append(str(e))
            continue
        if running and rc != 0:
            failures.append(f"gateway exited {rc} on SIGTERM (expected 0):\n{gw.stderr_text()}")
    assert not failures, "\n\n".join(failures)


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- Python ssl clients


def client_context(pki: PKI, version: ssl.TLSVersion | None = None, cert: Cert | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.load_verify_locations(pki.ca.cert)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


class TLSClient(LineClient):
    """LineClient on a TLS socket; closing sends close_notify, as a well-behaved peer does."""

    @classmethod
    def open(cls, address, context: ssl.SSLContext, timeout: float = REPLY_TIMEOUT) -> "TLSClient":
        sock = socket.create_connection(address, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return cls(context.wrap_socket(sock, server_hostname=SERVER_NAME))
        except BaseException:
            sock.close()
            raise

    def peer_certificate(self) -> dict:
        return self.sock.getpeercert()

    def close(self) -> None:
        try:
            self.sock.settimeout(2)
            self.sock.unwrap()
        except (OSError, ValueError):
            pass
        super().close()


def assert_refused(gw: TLSGateway, context: ssl.SSLContext) -> str:
    """The handshake, or the first exchange after it, must fail; returns the client's error.

    In TLS 1.3 the client finishes its side of the handshake before the server has checked the
    client's certificate, so a refusal can arrive as an alert on the first read.
    """
    try:
        with TLSClient.open(gw.address, context) as client:
            client.send(req("ping", 1))
            line = client.recv_line()
    except (ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError) as error:
        return str(error)
    pytest.fail(f"the gateway let the client in and answered {line!r}")


def log_warning(gw: TLSGateway, reason: str, start: int = 0) -> str:
    """The gateway's warning-level log line saying `TLS: <reason>`."""
    return gw.wait_log(r"\bwarning\b.*TLS: " + re.escape(reason), start=start)


# --------------------------------------------------------------------------- openssl s_client


class SClient:
    """`openssl s_client` as a line-oriented JSON-RPC peer over its stdin and stdout."""

    def __init__(self, address, *flags: str, ca: Path):
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"{address[0]}:{address[1]}", "-brief",
             "-CAfile", str(ca), "-verify_return_error", "-verify_hostname", SERVER_NAME, *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = bytearray()

    def send(self, obj) -> None:
        self.proc.stdin.write(jline(obj))
        self.proc.stdin.flush()

    def recv(self, timeout: float = REPLY_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise TimeoutError(f"s_client printed no reply line within {timeout}s: {bytes(self.buf)!r}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise Closed(f"s_client ended (rc={self.proc.wait()}): {self.proc.stderr.read().decode()}")
                self.buf += chunk
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return json.loads(line)

    def finish(self) -> tuple[int, str]:
        """Ends stdin (s_client then sends close_notify and exits); returns (exit code, stderr)."""
        try:
            _, err = self.proc.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"s_client still running {EXIT_TIMEOUT}s after its stdin ended:\n{err.decode()}")
        return self.proc.returncode, err.decode("utf-8", "replace")


# =========================================================================== protocol versions


@pytest.mark.parametrize("flag, version", [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")])
def test_openssl_s_client_exchanges_json_rpc(tls_gateway, pki, flag, version):
    gw = tls_gateway()
    client = SClient(gw.address, flag, ca=pki.ca.cert)

    client.send(req("ping", 1))
    assert client.recv() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    client.send(req("gateway/status", 2))
    status = client.recv()
    assert status["id"] == 2
    assert status["result"]["listeners"] == [gw.url]

    rc, err = client.finish()
    assert rc == 0, err
    assert f"Protocol version: {version}" in err
    assert "Verification: OK" in err


@pytest.mark.parametrize("flag, offered", [("-tls1_1", "TLS 1.1"), ("-tls1", "TLS 1.0")])
def test_versions_before_tls_1_2_are_refused_with_a_plain_reason(tls_gateway, pki, flag, offered):
    gw = tls_gateway()
    # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0.
    client = SClient(gw.address, flag, "-cipher", "DEFAULT:@SECLEVEL=0", ca=pki.ca.cert)
    rc, err = client.finish()

    assert rc != 0, "s_client connected with a version below TLS 1.2"
    assert "alert protocol version" in err
    log_warning(gw, f"protocol version not supported (peer offered {offered})")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1_3", "tls1_2"])
def test_python_ssl_client_exchanges_json_rpc(tls_gateway, pki, version):
    gw = tls_gateway()
    with TLSClient.open(gw.address, client_context(pki, version)) as client:
        assert client.sock.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
        if version == ssl.TLSVersion.TLSv1_2:
            assert TLS12_AEAD.match(client.sock.cipher()[0]), client.sock.cipher()
        client.ping_ok()
        status = client.call("gateway/status")["result"]
        assert status["listeners"] == [gw.url]
        assert status["connections"]["open"] >= 1


def test_large_and_pipelined_messages_cross_tls_intact(tls_gateway, pki):
    gw = tls_gateway()
    with TLSClient.open(gw.address, client_context(pki)) as client:
        # 4 MiB in one message: many TLS records, many 64 KiB plaintext chunks.
        big = "x" * (4 * 1024 * 1024)
        client.send(req("ping", "big", {"padding": big}))
        assert client.recv(timeout=60) == {"jsonrpc": "2.0", "id": "big", "result": {}}
        # 2,000 requests in one write; every reply comes back, in order.
        client.send_raw(b"".join(jline(req("ping", n)) for n in range(2000)))
        assert [client.recv()["id"] for _ in range(2000)] == list(range(2000))


def test_close_notify_ends_the_input_and_replies_to_what_was_sent_still_arrive(tls_gateway, pki):
    gw = tls_gateway()
    # Python's ssl over memory buffers, to send close_notify and keep reading afterwards.
    sock = socket.create_connection(gw.address, timeout=REPLY_TIMEOUT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(pki).wrap_bio(incoming, outgoing, server_hostname=SERVER_NAME)

    def send_pending():
        data = outgoing.read()
        if data:
            sock.sendall(data)

    def receive() -> bool:
        data = sock.recv(65536)
        if not data:
            incoming.write_eof()
        else:
            incoming.write(data)
        return bool(data)

    with sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                send_pending()
                assert receive(), "the gateway closed the connection during the handshake"
        for n in range(500):
            tls.write(jline(req("ping", n)))
        with pytest.raises(ssl.SSLWantReadError):
            tls.unwrap()  # sends our close_notify; the gateway's comes after its replies
        send_pending()

        received, ending = bytearray(), None
        while ending is None:
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                if not receive():
                    ending = "end of transport"
            except ssl.SSLZeroReturnError:
                ending = "close_notify"
    replies = [json.loads(line) for line in bytes(received).splitlines()]
    assert [r["id"] for r in replies] == list(range(500))
    assert ending == "close_notify"


def test_a_plain_tcp_client_on_a_tls_listener_is_told_it_is_not_speaking_tls(tls_gateway):
    gw = tls_gateway()
    with socket.create_connection(gw.address, timeout=REPLY_TIMEOUT) as sock:
        client = LineClient(sock)
        client.send(req("ping", 1))
        received = client.expect_eof()
    assert b"jsonrpc" not in received
    assert "is it using plain TCP?" in log_warning(gw, "the peer is not speaking TLS")


# =========================================================================== mutual TLS


def mtls_args(pki: PKI, mode: str) -> tuple:
    return ("--listen", "tls://127.0.0.1:0", "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
            "--tls-ca", str(pki.ca.cert), "--tls-client-auth", mode)


VERSIONS = pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1_3", "tls1_2"])


@VERSIONS
def test_require_lets_in_a_client_with_a_certificate_from_the_ca(tls_gateway, pki, version):
    gw = tls_gateway(*mtls_args(pki, "require"))
    with TLSClient.open(gw.address, client_context(pki, version, cert=pki.agent)) as client:
        client.ping_ok()


@VERSIONS
def test_require_refuses_a_client_without_a_certificate(tls_gateway, pki, version):
    gw = tls_gateway(*mtls_args(pki, "require"))
    error = assert_refused(gw, client_context(pki, version))
    assert "certificate required" in error or "handshake failure" in error, error
    log_warning(gw, "peer did not present a certificate but one is required")


@VERSIONS
def test_require_refuses_a_certificate_from_another_ca(tls_gateway, pki, version):
    gw = tls_gateway(*mtls_args(pki, "require"))
    error = assert_refused(gw, client_context(pki, version, cert=pki.stranger))
    assert "unknown ca" in error, error
    log_warning(gw, "certificate verify failed: unable to get local issuer certificate")


def test_optional_lets_in_a_client_without_a_certificate(tls_gateway, pki):
    gw = tls_gateway(*mtls_args(pki, "optional"))
    with TLSClient.open(gw.address, client_context(pki)) as client:
        client.ping_ok()


def test_optional_still_refuses_a_certificate_that_does_not_verify(tls_gateway, pki):
    gw = tls_gateway(*mtls_args(pki, "optional"))
    assert "unknown ca" in assert_refused(gw, client_context(pki, cert=pki.stranger))
    log_warning(gw, "certificate verify failed")


def test_a_client_that_distrusts_the_server_certificate_is_logged(tls_gateway, pki):
    gw = tls_gateway()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.other_ca.cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        TLSClient.open(gw.address, context)
    log_warning(gw, "the peer rejected our certificate (unknown ca)")


# =========================================================================== identity of attached agents


def register(client: LineClient, name: str, tools: list | None = None) -> dict:
    params = {"agentName": name, "version": "1"}
    if tools is not None:
        params["tools"] = tools
    return client.call("agents/register", params)


ECHO_TOOL = {"name": "echo", "description": "Echoes its text.",
             "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}


def test_an_attached_agent_over_mutual_tls_shows_its_certificate_identity(tls_gateway, pki):
    gw = tls_gateway(*mtls_args(pki, "require"))
    with TLSClient.open(gw.address, client_context(pki, cert=pki.agent)) as agent, \
            TLSClient.open(gw.address, client_context(pki, cert=pki.operator)) as operator:
        reply = register(agent, AGENT_CN, [ECHO_TOOL])
        agent_id = reply["result"]["agentId"]
        assert agent_id.startswith(f"{AGENT_CN}@")

        status = operator.call("agents/get", {"agentId": agent_id})["result"]
        assert status["kind"] == "attached"
        assert status["identity"] == {
            "subject": AGENT_SUBJECT,
            "dnsNames": [AGENT_DNS],
            "uris": [AGENT_URI],
            "ipAddresses": [],
            "emailAddresses": [],
        }
        listed = operator.call("agents/list")["result"]["agents"]
        assert [a["identity"]["subject"] for a in listed if a["agentId"] == agent_id] == [AGENT_SUBJECT]


def test_an_attached_agent_without_a_certificate_has_no_identity(tls_gateway, pki):
    gw = tls_gateway(*mtls_args(pki, "optional"))
    with TLSClient.open(gw.address, client_context(pki)) as agent:
        agent_id = register(agent, "anonymous-agent")["result"]["agentId"]
        status = agent.call("agents/get", {"agentId": agent_id})["result"]
    assert "identity" not in status


@pytest.fixture
def name_match_gateway(tls_gateway, pki):
    return tls_gateway(tls={"ca": str(pki.ca.cert), "clientAuth": "optional", "requireAgentNameMatch": True})


@pytest.mark.parametrize("name", [AGENT_CN, AGENT_DNS], ids=["common-name", "dns-san"])
def test_name_match_lets_an_agent_register_under_a_name_its_certificate_carries(name_match_gateway, pki, name):
    with TLSClient.open(name_match_gateway.address, client_context(pki, cert=pki.agent)) as agent:
        reply = register(agent, name)
    assert reply["result"]["agentId"].startswith(f"{name}@"), reply


def test_name_match_lets_an_agent_register_under_its_uri_san(name_match_gateway, pki):
    with TLSClient.open(name_match_gateway.address, client_context(pki, cert=pki.agent)) as agent:
        reply = register(agent, AGENT_URI)
    assert "result" in reply, reply


def test_name_match_forbids_a_name_the_certificate_does_not_carry(name_match_gateway, pki):
    with TLSClient.open(name_match_gateway.address, client_context(pki, cert=pki.agent)) as agent:
        reply = register(agent, "agent-9")
        error = reply["error"]
        assert error["code"] == -32005
        assert error["data"]["agentName"] == "agent-9"
        assert error["data"]["subject"] == AGENT_SUBJECT
        assert AGENT_CN in error["data"]["reason"] and AGENT_DNS in error["data"]["reason"]
        # Refused, not registered: the same connection may still register properly.
        assert register(agent, AGENT_CN)["result"]["agentId"].startswith(f"{AGENT_CN}@")


def test_name_match_forbids_an_agent_without_a_certificate(name_match_gateway, pki):
    with TLSClient.open(name_match_gateway.address, client_context(pki)) as agent:
        error = register(agent, AGENT_CN)["error"]
    assert error["code"] == -32005
    assert error["data"]["agentName"] == AGENT_CN
    assert error["data"]["reason"] == "no client certificate"
    assert "subject" not in error["data"]


def test_name_match_does_not_take_a_cn_from_inside_another_attribute(name_match_gateway, pki):
    with TLSClient.open(name_match_gateway.address, client_context(pki, cert=pki.sneaky)) as agent:
        # The certificate's only CN is agent-9; "CN=impostor" is text inside its O attribute.
        assert register(agent, "agent-9")["result"]["agentId"].startswith("agent-9@")
    with TLSClient.open(name_match_gateway.address, client_context(pki, cert=pki.sneaky)) as agent:
        reply = register(agent, "impostor")
    assert reply.get("error", {}).get("code") == -32005, reply


# =========================================================================== SIGHUP reload


@pytest.fixture
def reloadable(tmp_path, pki):
    """Certificate and key files the test may replace: a copy of the test server's."""
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copyfile(pki.server.cert, cert)
    shutil.copyfile(pki.server.key, key)
    return Cert(cert, key)


def replace_files(target: Cert, source: Cert) -> None:
    """Swap in new files the way a renewal tool does: write aside, then rename."""
    for src, dst in ((source.cert, target.cert), (source.key, target.key)):
        aside = dst.with_suffix(".new")
        shutil.copyfile(src, aside)
        os.replace(aside, dst)


def subject_of(peer: dict) -> dict:
    return {k: v for rdn in peer["subject"] for k, v in rdn}


def test_sighup_gives_new_connections_the_new_certificate_and_keeps_live_ones(tls_gateway, pki, reloadable):
    gw = tls_gateway("--listen", "tls://127.0.0.1:0", "--tls-cert", str(reloadable.cert), "--tls-key", str(reloadable.key))
    with TLSClient.open(gw.address, client_context(pki)) as live:
        before = live.peer_certificate()
        assert int(before["serialNumber"], 16) == pki.server.serial
        live.ping_ok()

        replace_files(reloadable, pki.renewed)
        mark = gw.log_position()
        gw.send_signal(signal.SIGHUP)
        gw.wait_log(r"TLS: certificates reloaded on SIGHUP", start=mark)

        # The live connection goes on with its session and its certificate.
        live.ping_ok()
        assert live.peer_certificate() == before

        with TLSClient.open(gw.address, client_context(pki)) as fresh:
            after = fresh.peer_certificate()
            fresh.ping_ok()
    assert int(after["serialNumber"], 16) == pki.renewed.serial != pki.server.serial
    assert subject_of(after)["organizationName"] == "Switchboard Tests Renewed"
    assert subject_of(before)["organizationName"] == "Switchboard Tests"


def test_a_failed_reload_keeps_the_previous_certificate(tls_gateway, pki, reloadable):
    gw = tls_gateway("--listen", "tls://127.0.0.1:0", "--tls-cert", str(reloadable.cert), "--tls-key", str(reloadable.key))
    with TLSClient.open(gw.address, client_context(pki)) as client:
        assert int(client.peer_certificate()["serialNumber"], 16) == pki.server.serial
        client.ping_ok()

    # A renewed certificate with the old key: the pair does not match.
    shutil.copyfile(pki.renewed.cert, reloadable.cert)
    mark = gw.log_position()
    gw.send_signal(signal.SIGHUP)
    line = gw.wait_log(r"TLS: reload on SIGHUP failed", start=mark)
    assert "keeping the previous certificates" in line
    assert f"the private key in {reloadable.key} does not match the certificate in {reloadable.cert}" in line

    with TLSClient.open(gw.address, client_context(pki)) as client:
        assert int(client.peer_certificate()["serialNumber"], 16) == pki.server.serial
        client.ping_ok()


def test_a_sighup_right_after_startup_reloads_rather_than_kills(tls_gateway, pki, reloadable):
    # The window is short: a few gateways, each sent SIGHUP as soon as it says it is listening.
    for _ in range(10):
        gw = tls_gateway("--listen", "tls://127.0.0.1:0", "--tls-cert", str(reloadable.cert), "--tls-key", str(reloadable.key))
        gw.send_signal(signal.SIGHUP)
        try:
            gw.wait_log(r"TLS: certificates reloaded on SIGHUP")
        except AssertionError:
            pytest.fail(f"the gateway ended on SIGHUP with exit status {gw.proc.wait(EXIT_TIMEOUT)}:\n{gw.stderr_text()}")
        gw.stop()


# =========================================================================== startup errors


def run_to_exit(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(switchboard_bin()), "serve", "--listen", "tls://127.0.0.1:0", *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"switchboard did not exit on a certificate error:\n{e.stderr}") from None


STARTUP_ERRORS = {
    "missing-certificate": (
        lambda p, d: (d / "nowhere.pem", p.server.key),
        "the certificate chain file {cert} does not exist"),
    "missing-key": (
        lambda p, d: (p.server.cert, d / "nowhere.key"),
        "the private key file {key} does not exist"),
    "key-of-another-certificate": (
        lambda p, d: (p.server.cert, p.agent.key),
        "the private key in {key} does not match the certificate in {cert}"),
    "expired-certificate": (
        lambda p, d: (p.expired.cert, p.expired.key),
        "the certificate in {cert} expired on 2020-01-02 00:00:00 UTC; renew it"),
    "key-given-as-certificate": (
        lambda p, d: (p.server.key, p.server.key),
        "the certificate chain file {cert} is not PEM"),
}


@pytest.mark.parametrize("case", list(STARTUP_ERRORS))
def test_a_certificate_problem_at_startup_exits_2_naming_the_problem(pki, tmp_path, case):
    files, message = STARTUP_ERRORS[case]
    cert, key = files(pki, tmp_path)
    done = run_to_exit("--tls-cert", str(cert), "--tls-key", str(key))
    assert done.returncode == 2, done.stderr
    assert f"switchboard: TLS: {message.format(cert=cert, key=key)}" in done.stderr
    assert "listening on" not in done.stderr


def test_a_missing_ca_bundle_at_startup_exits_2(pki, tmp_path):
    ca = tmp_path / "no-ca.pem"
    done = run_to_exit("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
                       "--tls-ca", str(ca), "--tls-client-auth", "require")
    assert done.returncode == 2, done.stderr
    assert f"switchboard: TLS: the CA bundle {ca} does not exist" in done.stderr


# =========================================================================== handshake timeout


def test_a_client_that_never_handshakes_is_closed_after_the_timeout_while_others_are_served(tls_gateway, pki):
    gw = tls_gateway(tls={"handshakeTimeoutSeconds": 1})
    with TLSClient.open(gw.address, client_context(pki)) as early:
        early.ping_ok()
        with socket.create_connection(gw.address, timeout=REPLY_TIMEOUT) as silent:
            started = time.monotonic()
            # Others connect, handshake and are answered while the silent one waits.
            with TLSClient.open(gw.address, client_context(pki)) as other:
                other.ping_ok()
            received = LineClient(silent).expect_eof()
            waited = time.monotonic() - started
        assert received == b""
        assert 0.9 <= waited < 5, f"closed after {waited:.2f}s; the configured handshake timeout is 1 s"
        log_warning(gw, "the peer did not complete the TLS handshake within 1 s")
        # A connection whose handshake is done is not subject to the timeout, however idle.
        early.ping_ok()


def test_a_certificate_confines_shared_memory_to_its_own_tenant_namespace(tls_gateway, pki):
    gw = tls_gateway(*mtls_args(pki, "optional"))
    with TLSClient.open(gw.address, client_context(pki, cert=pki.agent)) as tenant, \
            TLSClient.open(gw.address, client_context(pki, cert=pki.operator)) as other, \
            TLSClient.open(gw.address, client_context(pki)) as anonymous:
        # Without a namespace, a tenant's keys land in its own.
        stored = tenant.call("memory/set", {"key": "position", "value": {"qty": 7}})
        assert "result" in stored, stored
        mine = tenant.call("memory/get", {"key": "position"})["result"]
        assert mine["value"] == {"qty": 7}
        # Another tenant can neither read nor write it.
        refused = other.call("memory/get", {"key": "position", "namespace": f"tenant:{AGENT_CN}"})
        assert refused["error"]["code"] == -32005
        assert refused["error"]["data"]["namespace"] == f"tenant:{AGENT_CN}"
        assert other.call("memory/get", {"key": "position"})["result"].get("found") is False
        # Its own sub-namespaces are its own.
        assert "result" in tenant.call("memory/set", {"key": "k", "value": 1, "namespace": f"tenant:{AGENT_CN}/desk-1"})
        # A peer without a certificate is the operator's and sees every namespace.
        seen = anonymous.call("memory/get", {"key": "position", "namespace": f"tenant:{AGENT_CN}"})["result"]
        assert seen["value"] == {"qty": 7}


def test_a_certificate_principal_past_its_connection_quota_is_closed(tls_gateway, pki, tmp_path):
    """A mapped client certificate is a principal from the handshake on (protocol-spec 12.2): it
    takes one of its connection quota then (12.7.2), and a connection past it is closed, with no
    request to refuse."""
    config = tmp_path / "quota.json"
    config.write_text(json.dumps({"auth": {
        "anonymous": "none",
        "certificates": [{"match": {"commonName": AGENT_CN}, "name": "agent-seven", "roles": ["agent"], "agentNames": ["*"]}],
        "quotas": {"principal": {"connections": 1}},
    }}))
    gw = tls_gateway(*mtls_args(pki, "require"), "--config", str(config))
    with TLSClient.open(gw.address, client_context(pki, cert=pki.agent)) as first:
        assert first.call("auth/whoami")["result"]["principal"] == "agent-seven"
        with TLSClient.open(gw.address, client_context(pki, cert=pki.agent)) as second:
            with pytest.raises(Closed):
                second.call("ping")
        gw.wait_log(r"closing the connection of agent-seven: Limited: principal agent-seven may hold at most 1 connection")
        assert "result" in first.call("ping")
    # The first one closed: its place is free. (A connection's requests wait for its quota's
    # verdict, so an answer means it was let in.)
    deadline = time.monotonic() + 15
    while True:
        with TLSClient.open(gw.address, client_context(pki, cert=pki.agent)) as third:
            try:
                if third.call("auth/whoami")["result"]["principal"] == "agent-seven":
                    break
            except Closed:
                pass
        assert time.monotonic() < deadline, "the closed connection's place was not given back"
        time.sleep(0.1)


# --------------------------------------------------------------------------- https://


def test_an_https_listener_serves_the_http_face_and_negotiates_http_1_1(tls_gateway, pki):
    import httpx

    gw = tls_gateway("--listen", "https://127.0.0.1:0")
    line = gw.wait_log(r"listening on https://")
    port = int(re.search(r"https://127\.0\.0\.1:(\d+)", line).group(1))
    context = client_context(pki)
    with httpx.Client(verify=context, timeout=10) as client:
        assert client.get(f"https://127.0.0.1:{port}/healthz").json() == {"status": "alive"}
        opened = client.post(f"https://127.0.0.1:{port}/mcp", headers={"accept": "application/json, text/event-stream"},
                             json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}}})
        assert opened.status_code == 200 and "mcp-session-id" in opened.headers

    def negotiated(address, offered):
        ctx = client_context(pki)
        ctx.set_alpn_protocols(offered)
        with socket.create_connection(address, timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.selected_alpn_protocol()

    # ALPN: http/1.1 on https://; a client that offers only h2 is refused; tls:// selects none.
    assert negotiated(("127.0.0.1", port), ["h2", "http/1.1"]) == "http/1.1"
    with pytest.raises(ssl.SSLError):
        negotiated(("127.0.0.1", port), ["h2"])
    assert negotiated(gw.address, ["http/1.1"]) is None
