"""A local stand-in for Microsoft Entra ID's token endpoint and a managed identity endpoint, for
tests that run azure-identity's real credentials against it.

Over TLS (a self-signed certificate; azure-identity only takes an https authority) it serves
``POST /{tenant}/oauth2/v2.0/token`` (client credentials: a client secret, a certificate-signed
assertion whose PS256 signature and SHA-256 thumbprint it checks, or a federated token for a
workload identity) and the tenant's OpenID configuration. Over plain HTTP it serves an App
Service managed identity endpoint (``GET /msi/token`` with ``X-IDENTITY-HEADER``). Every token
comes from a pool made up front (so an emulator can be told which tokens to accept) and is
recorded with who asked for which scope.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TENANT = "7c3a1b8e-5a41-4a8e-9d37-0f2a6c1d9e55"
CLIENT_ID = "1f0e2d3c-4b5a-4968-8776-655443322110"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True, slots=True)
class Issued:
    """One token handed out."""

    kind: str
    client_id: str | None
    scope: str
    token: str
    expires_on: int


def _self_signed(
    common_name: str, *, ip: str | None = None
) -> tuple[bytes, bytes, x509.Certificate]:
    """A fresh RSA key and self-signed certificate: (key PEM, certificate PEM, certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenServer:
    """The endpoints above on 127.0.0.1; ``lifetime_s`` is each token's lifetime."""

    directory: Path
    lifetime_s: int = 3600
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_urlsafe(24))
    federated_token: str = field(default_factory=lambda: "fed-" + secrets.token_urlsafe(48))
    identity_header: str = field(default_factory=lambda: "ih-" + secrets.token_urlsafe(16))
    pool: list[str] = field(
        default_factory=lambda: ["at-" + secrets.token_urlsafe(32) for _ in range(200)]
    )
    issued: list[Issued] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    https_port: int = 0
    http_port: int = 0
    _runners: list[web.AppRunner] = field(default_factory=list)
    _client_cert: x509.Certificate | None = None

    @property
    def authority(self) -> str:
        """The https authority to give the credentials."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca_file(self) -> Path:
        """The server certificate, to trust (``connection_verify``)."""
        return self.directory / "server-ca.pem"

    @property
    def client_certificate_file(self) -> Path:
        """PEM with the app registration's private key and certificate."""
        return self.directory / "client.pem"

    @property
    def federated_token_file(self) -> Path:
        """The projected service account token of a workload identity."""
        return self.directory / "federated-token"

    @property
    def identity_endpoint(self) -> str:
        """IDENTITY_ENDPOINT of the App Service managed identity."""
        return f"http://127.0.0.1:{self.http_port}/msi/token"

    async def start(self) -> None:
        """Write the certificates and the federated token, and listen on two ports."""
        self.directory.mkdir(parents=True, exist_ok=True)
        key_pem, cert_pem, _ = _self_signed("127.0.0.1", ip="127.0.0.1")
        (self.directory / "server-key.pem").write_bytes(key_pem)
        self.ca_file.write_bytes(cert_pem)
        client_key, client_cert, self._client_cert = _self_signed("dynasync-test-app")
        self.client_certificate_file.write_bytes(client_key + client_cert)
        self.federated_token_file.write_text(self.federated_token, encoding="utf-8")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, self.directory / "server-key.pem")

        entra = web.Application()
        entra.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        entra.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        identity = web.Application()
        identity.router.add_get("/msi/token", self._app_service)
        for app, tls in ((entra, context), (identity, None)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            await web.SockSite(runner, sock, ssl_context=tls).start()
            self._runners.append(runner)
            if tls is not None:
                self.https_port = port
            else:
                self.http_port = port

    async def stop(self) -> None:
        """Stop listening."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def tokens_for(self, kind: str, scope: str) -> list[str]:
        """The tokens issued to ``kind`` for ``scope``, oldest first."""
        return [i.token for i in self.issued if i.kind == kind and i.scope == scope]

    def _issue(self, kind: str, client_id: str | None, scope: str) -> Issued:
        issued = Issued(
            kind, client_id, scope, self.pool.pop(0), int(time.time()) + self.lifetime_s
        )
        self.issued.append(issued)
        return issued

    def _refuse(self, why: str, status: int = 401) -> web.Response:
        self.refused.append(why)
        body = {"error": "invalid_client", "error_description": why}
        return web.json_response(body, status=status)

    async def _openid(self, request: web.Request) -> web.Response:
        base = f"{self.authority}/{request.match_info['tenant']}"
        return web.json_response(
            {
                "issuer": f"{base}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            }
        )

    def _kind(self, form: dict[str, str], token_url: str) -> str | None:
        """Which credential authenticated the request (None: none did)."""
        if form.get("client_secret") is not None:
            return "client_secret" if form["client_secret"] == self.client_secret else None
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return None
        assertion = form.get("client_assertion", "")
        if assertion == self.federated_token:
            return "workload_identity"
        return "certificate" if self._signed_by_client(assertion, token_url) else None

    def _signed_by_client(self, assertion: str, token_url: str) -> bool:
        cert = self._client_cert
        try:
            head, body, signature = assertion.split(".")
            header: dict[str, Any] = json.loads(_b64url(head))
            claims: dict[str, Any] = json.loads(_b64url(body))
        except ValueError:
            return False
        if cert is None or header.get("alg") != "PS256":
            return False
        thumb = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).decode()
        if header.get("x5t#S256") != thumb or claims.get("aud") != token_url:
            return False
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        try:
            public.verify(_b64url(signature), f"{head}.{body}".encode(), pss, hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    async def _token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        token_url = f"{self.authority}/{tenant}/oauth2/v2.0/token"
        if tenant != TENANT:
            return self._refuse(f"unknown tenant {tenant}", 400)
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT_ID:
            return self._refuse("not a client credentials request of the app", 400)
        kind = self._kind(form, token_url)
        if kind is None:
            return self._refuse("bad client credential")
        scope = form.get("scope", "")
        issued = self._issue(kind, form["client_id"], scope)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.lifetime_s,
                "ext_expires_in": self.lifetime_s,
                "access_token": issued.token,
            }
        )

    async def _app_service(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return self._refuse("bad identity header")
        if request.query.get("api-version") != "2019-08-01":
            return self._refuse("bad api-version", 400)
        resource = request.query.get("resource", "")
        issued = self._issue("managed_identity", request.query.get("client_id"), resource)
        return web.json_response(
            {
                "access_token": issued.token,
                "expires_on": str(issued.expires_on),
                "resource": resource,
                "token_type": "Bearer",
            }
        )
