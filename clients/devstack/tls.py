"""TLS for the development stack: a throwaway CA with server and client certificates (made
with the ``openssl`` command), and a TLS front for the embedded broker.

Tansu 0.6's own ``--cert``/``--key`` cannot be used (its command line refuses the two together,
and with either alone it still listens in plain text), so a secured broker in tests is Tansu
behind :class:`TlsFront`: clients speak TLS to the front (which may require a client
certificate), the front speaks plain Kafka to Tansu on 127.0.0.1, and Tansu advertises the
front's address, so every connection a client makes goes through TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port, port_open


@dataclass(frozen=True)
class CertificateFiles:
    """PEM files: ``ca`` signed ``server`` (for 127.0.0.1 and localhost) and ``client``."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise StartupError("the TLS tests need the openssl command (apt-get install openssl)")
    subprocess.run([binary, *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str = "cronbus test CA") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
             str(cert), "-days", "2", "-subj", f"/CN={name}")
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, request = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


def make_certificates(directory: Path) -> CertificateFiles:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    ca = make_ca(directory)
    server = _signed(directory, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client = _signed(directory, "client", ca, "extendedKeyUsage=clientAuth")
    return CertificateFiles(ca[0], *server, *client)


# --- the front ---------------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen_port: int, upstream_port: int, cert: str, key: str,
                client_ca: str | None) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca:  # mutual TLS: a client without a certificate from this CA is turned away
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(connected, "127.0.0.1", listen_port, ssl=context,
                                        ssl_handshake_timeout=5)
    async with server:
        await server.serve_forever()


class TlsFront:
    """``python -m cronbus.clients.devstack.tls`` in a child process: TLS on a free port in
    front of a plain TCP port."""

    def __init__(self, upstream_port: int, certificates: CertificateFiles, log_dir: Path, *,
                 require_client_cert: bool = False, port: int | None = None) -> None:
        self.port = port or free_port()
        argv = [sys.executable, "-m", "cronbus.clients.devstack.tls", "--listen", str(self.port),
                "--upstream", str(upstream_port), "--cert", str(certificates.server_cert),
                "--key", str(certificates.server_key)]
        if require_client_cert:
            argv += ["--client-ca", str(certificates.ca)]
        self.process = ManagedProcess("tls-front", argv, log_path=log_dir / "tls-front.log")

    def start(self, timeout_s: float = 10.0) -> TlsFront:
        self.process.start()
        self.process.wait_until(lambda: port_open("127.0.0.1", self.port), timeout_s, "listening")
        return self

    def stop(self) -> None:
        self.process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="a TLS front for a plain TCP port")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.upstream, args.cert, args.key, args.client_ca))


if __name__ == "__main__":
    main()
