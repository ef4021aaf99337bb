"""`parse_server_url`: defaults, every option, and every error message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_dispatch._url import DEFAULT_PORT, ServerUrl, parse_server_url


def test_defaults() -> None:
    assert DEFAULT_PORT == 443
    assert parse_server_url("grpc://dispatch.example.com") == ServerUrl(
        host="dispatch.example.com",
        port=443,
        ssl=True,
        ssl_root_certificates_path=None,
        ssl_private_key_path=None,
        ssl_certificate_chain_path=None,
        keep_alive=True,
        keep_alive_interval_s=60.0,
        keep_alive_timeout_s=20.0,
    )


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("grpc://127.0.0.1:50051", "127.0.0.1", 50051),
        ("grpc://localhost:1", "localhost", 1),
        ("grpc://localhost:65535", "localhost", 65535),
        ("grpc://[::1]:50051", "::1", 50051),
        ("grpc://Dispatch.Example.COM", "dispatch.example.com", 443),
        ("grpc://host/", "host", 443),
    ],
)
def test_host_and_port(url: str, host: str, port: int) -> None:
    parsed = parse_server_url(url)
    assert (parsed.host, parsed.port) == (host, port)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("on", True),
        ("On", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("off", False),
        ("OFF", False),
        ("0", False),
    ],
)
def test_boolean_spellings(value: str, expected: bool) -> None:
    assert parse_server_url(f"grpc://h?ssl={value}").ssl is expected
    assert parse_server_url(f"grpc://h?keep_alive={value}").keep_alive is expected


def test_ssl_off() -> None:
    assert parse_server_url("grpc://h:50051?ssl=false") == ServerUrl(
        host="h", port=50051, ssl=False
    )


def test_tls_paths() -> None:
    parsed = parse_server_url(
        "grpc://h?ssl=true&ssl_root_certificates_path=/etc/ca.pem"
        "&ssl_private_key_path=/etc/key.pem&ssl_certificate_chain_path=/etc/chain.pem"
    )
    assert parsed == ServerUrl(
        host="h",
        port=443,
        ssl=True,
        ssl_root_certificates_path=Path("/etc/ca.pem"),
        ssl_private_key_path=Path("/etc/key.pem"),
        ssl_certificate_chain_path=Path("/etc/chain.pem"),
    )


def test_each_tls_path_alone() -> None:
    assert parse_server_url(
        "grpc://h?ssl_root_certificates_path=ca.pem"
    ).ssl_root_certificates_path == Path("ca.pem")
    assert parse_server_url("grpc://h?ssl_private_key_path=k.pem").ssl_private_key_path == Path(
        "k.pem"
    )
    assert parse_server_url(
        "grpc://h?ssl_certificate_chain_path=c.pem"
    ).ssl_certificate_chain_path == Path("c.pem")


def test_keep_alive_times() -> None:
    parsed = parse_server_url("grpc://h?keep_alive_interval_s=15&keep_alive_timeout_s=2.5")
    assert parsed.keep_alive is True
    assert parsed.keep_alive_interval_s == 15.0
    assert parsed.keep_alive_timeout_s == 2.5


def test_keep_alive_off() -> None:
    parsed = parse_server_url("grpc://h?keep_alive=off")
    assert parsed.keep_alive is False
    assert (parsed.keep_alive_interval_s, parsed.keep_alive_timeout_s) == (60.0, 20.0)


def test_last_repeated_option_wins() -> None:
    assert parse_server_url("grpc://h?ssl=false&ssl=true").ssl is True


def test_not_a_str() -> None:
    with pytest.raises(TypeError) as info:
        parse_server_url(b"grpc://h")  # type: ignore[arg-type]
    assert str(info.value) == "server_url must be a str, got b'grpc://h'"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://h:50051",
            "server_url scheme must be 'grpc', got 'http' in 'http://h:50051'",
        ),
        (
            "grpcs://h",
            "server_url scheme must be 'grpc', got 'grpcs' in 'grpcs://h'",
        ),
        ("h:50051", "server_url scheme must be 'grpc', got 'h' in 'h:50051'"),
        ("", "server_url scheme must be 'grpc', got '' in ''"),
        (
            "grpc://h/dispatch",
            "server_url must not have a path or fragment, got 'grpc://h/dispatch'",
        ),
        ("grpc://h#top", "server_url must not have a path or fragment, got 'grpc://h#top'"),
        ("grpc://", "server_url has no host: 'grpc://'"),
        ("grpc://:50051", "server_url has no host: 'grpc://:50051'"),
        ("grpc://h:0", "server_url port is not a number in 1..65535: 'grpc://h:0'"),
        ("grpc://h:65536", "server_url port is not a number in 1..65535: 'grpc://h:65536'"),
        ("grpc://h:-1", "server_url port is not a number in 1..65535: 'grpc://h:-1'"),
        ("grpc://h:http", "server_url port is not a number in 1..65535: 'grpc://h:http'"),
        (
            "grpc://h?tls=false",
            "server_url has unknown options ['tls'] in 'grpc://h?tls=false'",
        ),
        (
            "grpc://h?zeta=1&alpha=2&ssl=false",
            "server_url has unknown options ['alpha', 'zeta'] in "
            "'grpc://h?zeta=1&alpha=2&ssl=false'",
        ),
        (
            "grpc://h?ssl=yes",
            "server_url option ssl must be true or false, got 'yes' in 'grpc://h?ssl=yes'",
        ),
        (
            "grpc://h?ssl=",
            "server_url option ssl must be true or false, got '' in 'grpc://h?ssl='",
        ),
        (
            "grpc://h?keep_alive=2",
            "server_url option keep_alive must be true or false, got '2' in "
            "'grpc://h?keep_alive=2'",
        ),
        (
            "grpc://h?ssl=false&ssl_root_certificates_path=ca.pem",
            "server_url sets ['ssl_root_certificates_path'] but ssl is off: "
            "'grpc://h?ssl=false&ssl_root_certificates_path=ca.pem'",
        ),
        (
            "grpc://h?ssl=off&ssl_private_key_path=k.pem&ssl_certificate_chain_path=c.pem",
            "server_url sets ['ssl_private_key_path', 'ssl_certificate_chain_path'] but ssl "
            "is off: 'grpc://h?ssl=off&ssl_private_key_path=k.pem&ssl_certificate_chain_path=c.pem'",
        ),
        (
            "grpc://h?keep_alive=false&keep_alive_interval_s=10",
            "server_url sets ['keep_alive_interval_s'] but keep_alive is off: "
            "'grpc://h?keep_alive=false&keep_alive_interval_s=10'",
        ),
        (
            "grpc://h?keep_alive=0&keep_alive_timeout_s=5&keep_alive_interval_s=10",
            "server_url sets ['keep_alive_interval_s', 'keep_alive_timeout_s'] but keep_alive "
            "is off: 'grpc://h?keep_alive=0&keep_alive_timeout_s=5&keep_alive_interval_s=10'",
        ),
        (
            "grpc://h?keep_alive_interval_s=0",
            "server_url option keep_alive_interval_s must be seconds > 0, got '0' in "
            "'grpc://h?keep_alive_interval_s=0'",
        ),
        (
            "grpc://h?keep_alive_interval_s=-5",
            "server_url option keep_alive_interval_s must be seconds > 0, got '-5' in "
            "'grpc://h?keep_alive_interval_s=-5'",
        ),
        (
            "grpc://h?keep_alive_timeout_s=0.0",
            "server_url option keep_alive_timeout_s must be seconds > 0, got '0.0' in "
            "'grpc://h?keep_alive_timeout_s=0.0'",
        ),
        (
            "grpc://h?keep_alive_timeout_s=soon",
            "server_url option keep_alive_timeout_s must be seconds > 0, got 'soon' in "
            "'grpc://h?keep_alive_timeout_s=soon'",
        ),
        (
            "grpc://h?keep_alive_timeout_s=inf",
            "server_url option keep_alive_timeout_s must be seconds > 0, got 'inf' in "
            "'grpc://h?keep_alive_timeout_s=inf'",
        ),
        (
            "grpc://h?keep_alive_interval_s=nan",
            "server_url option keep_alive_interval_s must be seconds > 0, got 'nan' in "
            "'grpc://h?keep_alive_interval_s=nan'",
        ),
    ],
)
def test_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_server_url(url)
