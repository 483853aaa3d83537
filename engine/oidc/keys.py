"""The connection's JWKS, key selection and signature verification (product.md §2).

The key comes only from the connection's JWKS file, the JWKS it fetches (`jwks_uri`,
`discovery`: engine.oidc.fetched), or for HS256/384/512 its client secret (the
environment variable `client_secret_env` names): the JOSE header's `jku`, `jwk`,
`x5u` and `x5c` are never read. With a `kid`, only the keys carrying that `kid` are
candidates; without one, every key whose type fits `alg`. Keys with `use: "enc"` are not
signing keys and are left out of the set; a key whose own `alg` differs from the token's,
or whose type or curve does not fit it, is never used. Verification itself is joserfc's.

Choices where the spec is silent: RSA keys shorter than 2048 bits are never used
(`unsupported` when the token names one); JWKS entries joserfc cannot import are left
out; a JWKS file that is not a JSON object with a `keys` list (or a single JWK) is a
configuration error.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key, OctKey, RSAKey, import_key

from engine.config import ConfigError, Connection
from engine.filecache import FileCache
from engine.oidc.compact import Compact
from engine.token import TokenRejected

MIN_RSA_BITS = 2048

# alg → (key type, curve or None): what a key must be for that alg to fit it.
ALGORITHMS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{f"HS{n}": ("oct", None) for n in (256, 384, 512)},
    **{f"RS{n}": ("RSA", None) for n in (256, 384, 512)},
    **{f"PS{n}": ("RSA", None) for n in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "ES256K": ("EC", frozenset({"secp256k1"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "Ed25519": ("OKP", frozenset({"Ed25519"})),
    "Ed448": ("OKP", frozenset({"Ed448"})),
}


@dataclass(frozen=True, slots=True)
class JwkEntry:
    """One signing key of the JWKS, with the JWK members that decide whether it fits."""

    key: Key
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    rsa_bits: int | None


# One entry per JWKS file, kept until the file changes: connections taking turns never
# evict each other's keys, and a changed file replaces its own entry (engine.filecache).
_JWKS: FileCache[tuple[JwkEntry, ...]] = FileCache()


def load_jwks(path: Path) -> tuple[JwkEntry, ...]:
    """The signing keys of a JWKS file (cached until the file changes); ConfigError."""
    try:
        return _JWKS.get(str(path), path, lambda: read_jwks(path))
    except OSError as exc:
        raise ConfigError(path, "jwks", f"cannot read the JWKS: {exc}") from None


def read_jwks(path: Path) -> tuple[JwkEntry, ...]:
    """Read and parse a JWKS file's signing keys; ConfigError."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(path, "jwks", f"cannot read the JWKS: {exc}") from None
    entries = jwks_entries(data)
    if entries is None:
        raise ConfigError(path, "jwks", 'expected a JWKS: a JSON object with a "keys" list')
    return entries


def jwks_entries(data: Any) -> tuple[JwkEntry, ...] | None:
    """The signing keys of a parsed JWKS (a single JWK counts as a set of one); None
    when `data` is no JWKS."""
    if isinstance(data, dict) and "kty" in data:
        data = {"keys": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        return None
    return tuple(e for e in (_entry(jwk) for jwk in data["keys"]) if e is not None)


def _entry(jwk: Any) -> JwkEntry | None:
    if not isinstance(jwk, dict) or jwk.get("use") == "enc":
        return None
    ops = jwk.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        return None
    try:
        with warnings.catch_warnings():
            # joserfc warns on short HMAC secrets; the IdP chose the client secret
            warnings.simplefilter("ignore")
            key = import_key(jwk)
    except (JoseError, ValueError, TypeError):
        return None
    kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
    alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
    crv = jwk.get("crv") if isinstance(jwk.get("crv"), str) else None
    bits = None
    if isinstance(key, RSAKey):
        bits = key.public_key.key_size
    return JwkEntry(key, kid, str(jwk["kty"]), crv, alg, bits)


def _misfit(entry: JwkEntry, alg: str) -> str | None:
    """Why `entry` cannot verify an `alg` signature, or None when it can."""
    kty, curves = ALGORITHMS[alg]
    if entry.alg is not None and entry.alg != alg:
        return f"the key is for {entry.alg}"
    if entry.kty != kty:
        return f"{alg} needs a {kty} key, the key is {entry.kty}"
    if curves is not None and entry.crv not in curves:
        return f"{alg} needs curve {'/'.join(sorted(curves))}, the key is {entry.crv}"
    if entry.rsa_bits is not None and entry.rsa_bits < MIN_RSA_BITS:
        return f"the key has {entry.rsa_bits} bits, fewer than {MIN_RSA_BITS}"
    return None


def verify_signature(token: Compact, connection: Connection) -> None:
    """Check the signature against the connection's JWKS; TokenRejected on failure."""
    alg = token.header["alg"]
    if alg == "none":
        raise TokenRejected("unsupported", 'expected a signed token, found alg "none"')
    if alg not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise TokenRejected("unsupported", f"expected alg one of {known}, found {alg!r}")
    secret = _client_secret(connection, alg)
    fetched = connection.jwks_uri is not None or connection.discovery is not None
    if connection.jwks is None and secret is None and not fetched:
        if connection.client_secret_env is not None and alg.startswith("HS"):
            raise TokenRejected(
                "untrusted-signer",
                f"the connection's client secret is not set: the environment variable"
                f" {connection.client_secret_env} is missing or empty",
            )
        what = "an HS256/HS384/HS512 secret" if connection.client_secret_env else "a jwks file"
        raise TokenRejected(
            "untrusted-signer", f"alg {alg} needs a key from a JWKS; the connection has {what}"
        )
    entries = load_jwks(connection.jwks) if connection.jwks is not None else ()
    kid = token.header.get("kid")
    if fetched:
        from engine.oidc.fetched import fetched_keys

        have_kid = not isinstance(kid, str) or any(e.kid == kid for e in entries)
        entries = (*entries, *fetched_keys(connection, None if have_kid else kid))
    if secret is not None:
        entries = (*entries, secret)
    if "kid" in token.header:
        if not isinstance(kid, str):
            raise TokenRejected("malformed", "JWT header: kid is not a string")
        # The client secret answers to any kid: IdPs name it as they like, or not at all.
        named = [e for e in entries if e.kid == kid or e is secret]
        if not named:
            known = ", ".join(sorted({e.kid for e in entries if e.kid})) or "none"
            raise TokenRejected(
                "untrusted-signer",
                f"the token names key {kid!r}, which is not a signing key of the "
                f"connection's JWKS (known kids: {known})",
            )
        usable = [e for e in named if _misfit(e, alg) is None]
        if not usable:
            why = _misfit(named[0], alg)
            raise TokenRejected("unsupported", f"alg {alg} does not fit key {kid!r}: {why}")
        who = f"key {kid!r}"
    else:
        usable = [e for e in entries if _misfit(e, alg) is None]
        if not usable:
            raise TokenRejected(
                "unsupported",
                f"alg {alg} fits no signing key of the connection's JWKS "
                f"(it needs a {ALGORITHMS[alg][0]} key)",
            )
        who = f"any of the {len(usable)} configured key(s) that fit {alg}"
    for entry in usable:
        if _verifies(token, entry.key, alg):
            return
    raise TokenRejected("bad-signature", f"the {alg} signature does not verify with {who}")


def _client_secret(connection: Connection, alg: str) -> JwkEntry | None:
    """The connection's client secret as an oct key, for an HS token: read from the
    environment variable `client_secret_env` names at each use (so a rotated secret
    takes effect with the process's environment), never from the workspace."""
    name = connection.client_secret_env
    if name is None or not alg.startswith("HS"):
        return None
    value = os.environ.get(name, "")
    if not value:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns on short secrets; the IdP chose it
        key = OctKey.import_key(value.encode("utf-8"))
    return JwkEntry(key, None, "oct", None, None, None)


class _Registry(jws.JWSRegistry):
    """joserfc's registry without its header checks: ours ran already, and `jku`, `jwk`,
    `x5u`, `x5c` must be ignored, not validated; size limits are our `max_token_bytes`."""

    def check_header(self, header: Any) -> None:
        return None


@functools.cache
def _algorithm(alg: str) -> JWSAlgModel:
    """joserfc's implementation of `alg` (one of ALGORITHMS), as its registry gives it
    for a registry allowing that alg alone. Its algorithm objects are stateless and
    shared by all its callers (joserfc keeps one of each), so one lookup serves all."""
    registry = _Registry(algorithms=[alg], strict_check_header=False)
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864; IdPs still sign with it
        warnings.simplefilter("ignore")
        return registry.get_alg(alg)


def _verifies(token: Compact, key: Key, alg: str) -> bool:
    """joserfc's verification of the token's signature with `key`: what its
    `deserialize_compact` does after splitting and decoding the token (done, strictly,
    by decode_compact) and checking the header (done by validate_id_token): the
    algorithm's key check (type, `use`, `alg`), then the algorithm's verify."""
    model = _algorithm(alg)
    signing_input = token.text[: token.text.rindex(".")].encode("ascii")
    try:
        model.check_key(key)
        return bool(model.verify(signing_input, token.signature, key))
    except (JoseError, ValueError, TypeError):
        return False


__all__ = ["ALGORITHMS", "JwkEntry", "load_jwks", "read_jwks", "verify_signature"]
