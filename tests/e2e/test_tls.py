"""TLS on the gateway's public listener: SDK 1.0 clients (JSON-RPC and HTTP+JSON)
that trust a test CA reach an agent through HTTPS, the served card names the https base, and
a client that does not trust the CA gets no answer."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import TaskState
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import _start_gateway
from e2e_util import HTTP_TIMEOUT_SECONDS, run, send_for_task, user_message


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(work: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 and localhost signed by it: (cert, key, ca) files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'superx e2e test ca')])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'superx e2e')]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1')), x509.DNSName('localhost')]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = (work / 'tls.crt', work / 'tls.key', work / 'ca.pem')
    files[0].write_bytes(_pem(cert))
    files[1].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files[2].write_bytes(_pem(ca))
    return files


@pytest.fixture(scope='module')
def tls_gateway(e2e, tmp_path_factory):
    """A gateway serving HTTPS in front of the session's task agent, and a context trusting its CA."""
    if e2e.direct:
        pytest.skip('the SDK agents serve no TLS (SUPERX_E2E_DIRECT=1)')
    work = tmp_path_factory.mktemp('tls-gw')
    pki = make_pki(work)
    proc, base = _start_gateway({'tasks': e2e.agent_ports['tasks']}, work, tls=pki)
    try:
        yield base, ssl.create_default_context(cafile=str(pki[2]))
    finally:
        proc.stop()


@pytest.mark.parametrize('binding', ['JSONRPC', 'HTTP+JSON'])
def test_sdk_client_over_https(tls_gateway, binding):
    base, trust = tls_gateway

    async def body():
        async with httpx.AsyncClient(verify=trust, timeout=HTTP_TIMEOUT_SECONDS) as http:
            config = ClientConfig(streaming=False, supported_protocol_bindings=[binding], httpx_client=http)
            async with await create_client(f'{base}/agents/tasks', config) as client:
                task = await send_for_task(client, user_message(f'over https, {binding}'))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED

    run(body())


def test_the_card_names_the_https_base_and_an_untrusting_client_is_refused(tls_gateway):
    base, trust = tls_gateway
    card = httpx.get(f'{base}/agents/tasks/.well-known/agent-card.json', verify=trust, timeout=HTTP_TIMEOUT_SECONDS)
    urls = [i['url'] for i in card.json()['supportedInterfaces']]
    assert urls and all(u.startswith(f'{base}/agents/tasks') for u in urls), urls
    with pytest.raises(httpx.ConnectError):
        httpx.get(f'{base}/health', timeout=HTTP_TIMEOUT_SECONDS)
