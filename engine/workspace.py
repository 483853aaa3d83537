"""`jitprov init`: a new workspace that checks clean and whose cases pass.

It holds a config with one example SAML connection, its rules, a test IdP key pair,
sample tokens (TOML, and a signed response minted from one of them), and rule test
cases. The signed response is minted at init time and valid for five minutes; the cases
that use it pin `at` to that moment, so they keep passing later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from engine.config import CONFIG_NAME, load_config

# template file → where it goes in the workspace
_LAYOUT = {
    "jitprov.toml": CONFIG_NAME,
    "example.rules": "rules/example.rules",
    "alice.toml": "samples/alice.toml",
    "nomail.toml": "samples/nomail.toml",
    "alice-creates.case.toml": "tests/alice-creates.case.toml",
    "alice-updates.case.toml": "tests/alice-updates.case.toml",
    "nomail-denied.case.toml": "tests/nomail-denied.case.toml",
    "expired-rejected.case.toml": "tests/expired-rejected.case.toml",
}


class WorkspaceExists(Exception):
    """The target folder already holds a workspace (or a file init would overwrite)."""


@dataclass(frozen=True, slots=True)
class InitResult:
    root: Path
    created: list[Path]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def init_workspace(dest: Path, *, now: datetime | None = None, sp_keys: bool = False) -> InitResult:
    """Create a workspace in `dest` (created if missing); never overwrites a file. With
    `sp_keys`, also this SP's signing key pair (`certs/sp.key`, `certs/sp.crt`), set as
    the example connection's `sp_key` and `sp_certificate` (its SP metadata's signing
    key)."""
    from engine.saml.keys import generate_key_pair, generate_test_idp
    from engine.saml.mint import mint
    from engine.sample import parse_sample_text

    dest = dest.resolve()
    clashes = [
        rel for rel in (*_LAYOUT.values(), "certs", "samples/alice.xml") if (dest / rel).exists()
    ]
    if clashes:
        raise WorkspaceExists(
            f"{dest}: already holds {', '.join(sorted(clashes))}; choose an empty folder"
        )
    minted_at = (now or datetime.now(UTC)).replace(microsecond=0)
    values = {
        "at": _stamp(minted_at + timedelta(minutes=1)),
        "late": _stamp(minted_at + timedelta(hours=1)),
    }
    templates = resources.files("engine") / "templates" / "init"
    created: list[Path] = []
    for name, rel in _LAYOUT.items():
        text = (templates / name).read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace("{" + placeholder + "}", value)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        created.append(target)
    key, cert = generate_test_idp(dest / "certs", "jitprov test IdP")
    created += [key, cert]
    if sp_keys:
        from engine.config_edit import save_connection

        sp_key, sp_cert = generate_key_pair(dest / "certs", "sp", "jitprov SP")
        created += [sp_key, sp_cert]
        save_connection(
            dest / CONFIG_NAME,
            "example",
            {"sp_certificate": "certs/sp.crt", "sp_key": "certs/sp.key"},
        )
    config = load_config(dest / CONFIG_NAME)
    sample = parse_sample_text((dest / "samples" / "alice.toml").read_text(encoding="utf-8"))
    token = mint(
        sample,
        config.connection("example"),
        key_pem=key.read_bytes(),
        cert_pem=cert.read_bytes(),
        at=minted_at,
    )
    signed = dest / "samples" / "alice.xml"
    signed.write_bytes(token)
    created.append(signed)
    return InitResult(dest, created)
