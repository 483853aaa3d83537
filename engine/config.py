"""The workspace config (`jitprov.toml`, product.md §1): find, load, validate.

Every key is checked; an unknown key is an error (a typo must never be ignored). Errors
name the file, the key and what was expected:
`jitprov.toml: connections.okta.mode: expected one of create-and-update, create-only,
update-only, got "create"`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.filekinds import EXPECTED_IN_FILE, FileKind, file_problem
from rules.vocabulary import BUILTIN_FIELDS, FIELD_TYPES, KEYWORDS, FieldType

CONFIG_NAME = "jitprov.toml"

PROTOCOLS = ("saml2", "oidc")
REQUIRE_SIGNED = ("assertion", "response", "either", "both")
MODES = ("create-and-update", "create-only", "update-only")
ON_ERROR = ("abort", "continue")
FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
DEFAULT_MAX_TOKEN_BYTES = 1_048_576
DEFAULT_CLOCK_SKEW = 120
DEFAULT_AUDIENCE = "urn:jitprov:sp"
DEFAULT_REFRESH_MIN = 600.0  # saml2 metadata_url: refetched no more often than this
DEFAULT_REFRESH_MAX = 86_400.0  # ... and at least this often
DEFAULT_SCOPES = ("openid", "email", "profile")  # oidc: what the code flow asks for
CLIENT_AUTH = ("client_secret_basic", "client_secret_post", "private_key_jwt")
DEFAULT_JWKS_MIN_REFRESH = 60.0  # seconds between fetches of one JWKS for unknown kids
TENANT_PLACEHOLDER = "{tenantid}"  # in an oidc issuer: any tenant of `tenants` in its place  # the SP entity ID when a workspace names none


class ConfigError(Exception):
    """The workspace config is missing or invalid; the message says where and why."""

    def __init__(self, path: Path | str, key: str | None, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.detail = message
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


STORE_MIGRATE = ("auto", "manual")
ON_DISABLED = ("deny", "enable")
DEFAULT_POOL = 10
DEFAULT_POOL_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the user store lives: a SQLite file (`path`) or a PostgreSQL `url`, and how
    its schema changes (`migrate`). The rest is PostgreSQL's alone: the most connections
    one process keeps (`pool`), how long a sign-in waits for one of them before it is an
    error (`pool_timeout`, seconds), and the longest any statement may run
    (`statement_timeout`, seconds; 0: no limit)."""

    path: Path | None
    url: str | None
    migrate: str = "auto"
    pool: int = DEFAULT_POOL
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the store keeps what `jitprov prune` removes: audit rows and recorded
    sign-ins, in days (None: for ever). Expired replay entries, sign-in requests and
    hand-offs go whatever these say."""

    audit_days: int | None = None
    recorded_days: int | None = None
    prune_every_seconds: int = 3600  # how often `jitprov serve` prunes


@dataclass(frozen=True, slots=True)
class Connection:
    """One IdP connection; every path is absolute (resolved against the config file)."""

    id: str
    protocol: Literal["saml2", "oidc"]
    issuer: str
    audience: str
    rules: Path
    certificates: tuple[Path, ...] = ()
    metadata: Path | None = None
    recipient: str | None = None
    require_signed: Literal["assertion", "response", "either", "both"] = "either"
    decryption_key: Path | None = None
    jwks: Path | None = None
    client_secret_env: str | None = None  # oidc: the environment variable of the HS secret
    jwks_uri: str | None = None  # oidc: the IdP's JWKS URL (engine.remote)
    discovery: str | None = None  # oidc: the OpenID Provider configuration URL
    jwks_min_refresh: float = DEFAULT_JWKS_MIN_REFRESH  # an unknown kid refetches, at most
    cache_dir: Path | None = None  # the workspace's .jitprov/cache (fetched keys)
    sso_url: str | None = None  # saml2: the IdP's SingleSignOnService (HTTP-Redirect)
    name_id_format: str | None = None  # saml2: the NameIDPolicy Format of AuthnRequests
    return_urls: tuple[str, ...] = ()  # where a sign-in may send the person next
    error_url: str | None = None  # where a refused browser sign-in goes, with ?error=<reason>
    sp_certificate: Path | None = None  # saml2: this SP's signing certificate (with sp_key)
    sp_key: Path | None = None  # ... and its private key (signs AuthnRequests)
    sp_encryption_certificate: Path | None = None  # the certificate of decryption_key
    metadata_url: str | None = None  # saml2: IdP metadata fetched and kept current
    metadata_certificate: Path | None = None  # ... whose signature it must carry
    metadata_signed: bool = True  # false: accepted unsigned (written explicitly)
    refresh_min: float = DEFAULT_REFRESH_MIN  # seconds a fetched copy serves, at least
    refresh_max: float = DEFAULT_REFRESH_MAX  # ... and at most before it is fetched again
    # oidc, the authorization code flow (engine.oidc.code_flow); the client id is `audience`
    authorization_endpoint: str | None = None  # else from discovery
    token_endpoint: str | None = None  # else from discovery
    redirect_uri: str | None = None  # this SP's callback URL, registered at the IdP
    token_endpoint_auth_method: str | None = None  # client_secret_basic/_post, private_key_jwt
    client_key: Path | None = None  # private_key_jwt: this client's private key (PEM)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    # oidc, an issuer with {tenantid}: the tenants accepted, or "any" (written explicitly)
    tenants: tuple[str, ...] | Literal["any"] | None = None
    clock_skew: int = DEFAULT_CLOCK_SKEW
    check_cert_dates: bool = False
    allow_sha1: bool = False
    require_in_response_to: bool = False
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    subject_from: str | None = None
    attributes: tuple[str, ...] | None = None
    mode: Literal["create-and-update", "create-only", "update-only"] = "create-and-update"
    link_by: str | None = None
    on_error: Literal["abort", "continue"] = "abort"
    redact: tuple[str, ...] = ()
    # `jitprov plan`: record each identity's latest validated attributes; redacted ones
    # as keyed hashes unless record_redacted
    record: bool = True
    record_redacted: bool = False
    on_disabled: Literal["deny", "enable"] = "deny"  # a sign-in of a disabled account

    def tenant_of(self, iss: str) -> str | None:
        """The tenant an `iss` names in the place of {tenantid} (a multi-tenant issuer),
        or None when it does not have the issuer's form."""
        head, found, tail = self.issuer.partition(TENANT_PLACEHOLDER)
        if not found or len(iss) <= len(head) + len(tail):
            return None
        if not (iss.startswith(head) and iss.endswith(tail)):
            return None
        tenant = iss[len(head) : len(iss) - len(tail)]
        return tenant if "/" not in tenant else None


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, validated workspace."""

    path: Path
    store: StoreConfig
    fields: dict[str, FieldType]  # built-in fields plus [store.fields]
    extra_fields: dict[str, FieldType]
    connections: dict[str, Connection] = field(default_factory=dict)
    serve_token_env: str | None = None  # [serve] token_env: the variable holding the bearer token
    sp_entity_id: str | None = None  # [sp] entity_id: the default audience of new connections
    retention: Retention = field(default_factory=lambda: Retention())  # [retention]

    @property
    def root(self) -> Path:
        return self.path.parent

    def connection(self, name: str) -> Connection:
        """The named connection, or a ConfigError listing the known ones."""
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections)) or "none"
            raise ConfigError(
                self.path.name, None, f"unknown connection {name!r} (known: {known})"
            ) from None


def find_config(start: Path | None = None, explicit: str | Path | None = None) -> Path:
    """The config file: `explicit` (a file, or a folder holding jitprov.toml), else the
    first jitprov.toml in `start` (default: the current folder) or its parents."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(path, None, "no such config file")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        CONFIG_NAME,
        None,
        f"not found in {here} or its parents (run `jitprov init` or pass --config PATH)",
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError."""
    path = Path(path).resolve()
    return parse_config(read_config_text(path), path)


def read_config_text(path: Path) -> str:
    """The text of the config file at `path`; ConfigError when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None


MAX_TOML_KEY_DEPTH = 16  # dotted-key parts: tomllib's cost grows with their square
# MAX_TOML_KEY_DEPTH + 1 dots between key parts (bare or quoted), anywhere in the text:
# only text holding such a run is scanned line by line.
_TOML_DOTTED_RUN = re.compile(
    r"""(?:(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')[ \t]*\.[ \t]*)"""
    + f"{{{MAX_TOML_KEY_DEPTH + 1}}}"
)
_TOML_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'')


def load_toml(text: str) -> dict[str, Any]:
    """tomllib.loads, after refusing keys dotted more than MAX_TOML_KEY_DEPTH times (a
    12 KB `a.a.a…` costs tomllib a third of a second and 130 MiB). ValueError (a
    TOMLDecodeError among them) or RecursionError says what is wrong: see toml_problem."""
    if text.count(".") <= MAX_TOML_KEY_DEPTH or not _TOML_DOTTED_RUN.search(text):
        return tomllib.loads(text)  # the common case: no run of dotted parts at all
    for number, line in enumerate(text.splitlines(), 1):
        head = line.lstrip()
        key = head if head.startswith("[") else head.split("=", 1)[0]
        if "." in key and _TOML_QUOTED.sub("", key).count(".") > MAX_TOML_KEY_DEPTH:
            raise ValueError(
                f"line {number}: a key of more than {MAX_TOML_KEY_DEPTH + 1} dotted parts"
            )
    return tomllib.loads(text)


def toml_problem(exc: Exception) -> str:
    """What tomllib found wrong, in words (its errors, too-long integers, deep nesting)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc) or type(exc).__name__


def parse_config(text: str, path: Path) -> Config:
    """Validate config text; `path` locates relative paths and names the file in errors."""
    label = path.name
    try:
        data = load_toml(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, over-long integers, nesting
        raise ConfigError(label, None, f"invalid TOML: {toml_problem(exc)}") from None
    checker = _Checker(label, path.parent)
    checker.keys(data, "", {"store", "connections", "serve", "sp", "retention"})
    store_table = checker.table(data, "store", "store")
    checker.keys(
        store_table,
        "store",
        {"path", "url", "fields", "migrate", "pool", "pool_timeout", "statement_timeout"},
    )
    store = _store(checker, store_table)
    extra = _fields(checker, checker.table(store_table, "fields", "store.fields"))
    fields: dict[str, FieldType] = {**BUILTIN_FIELDS, **extra}
    connections_table = checker.table(data, "connections", "connections")
    connections = {}
    for name, table in connections_table.items():
        key = f"connections.{name}"
        if not isinstance(table, dict):
            raise ConfigError(label, key, f"expected a table, got {_show(table)}")
        connections[name] = _connection(checker, name, table, fields)
    serve_table = checker.table(data, "serve", "serve")
    checker.keys(serve_table, "serve", {"token_env"})
    token_env = (
        checker.text(serve_table, "token_env", "serve.token_env")
        if "token_env" in serve_table
        else None
    )
    if token_env is not None:
        checker.env_name(serve_table, "token_env", "serve.token_env")
    sp_table = checker.table(data, "sp", "sp")
    checker.keys(sp_table, "sp", {"entity_id"})
    sp_entity_id = (
        checker.text(sp_table, "entity_id", "sp.entity_id") if "entity_id" in sp_table else None
    )
    retention = _retention(checker, checker.table(data, "retention", "retention"))
    return Config(path, store, fields, extra, connections, token_env, sp_entity_id, retention)


def _retention(checker: _Checker, table: dict[str, Any]) -> Retention:
    checker.keys(table, "retention", {"audit_days", "recorded_days", "prune_every_seconds"})
    values: dict[str, int] = {}
    for name, unit in (
        ("audit_days", "days"),
        ("recorded_days", "days"),
        ("prune_every_seconds", "seconds"),
    ):
        if name in table:
            value = checker.typed(
                table, name, f"retention.{name}", int, f"a whole number of {unit}"
            )
            if value < 1:
                raise checker.fail(
                    f"retention.{name}",
                    f"expected a whole number of {unit}, 1 or more, got {value}",
                )
            values[name] = value
    return Retention(**values)


class _Checker:
    """Small typed readers that raise ConfigError naming the key."""

    def __init__(self, label: str, root: Path) -> None:
        self.label = label
        self.root = root

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.label, key, message)

    def keys(self, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else key
                import difflib

                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                expected = ", ".join(sorted(allowed))
                raise self.fail(where, f"unknown key{hint}; expected one of {expected}")

    def table(self, data: Mapping[str, Any], name: str, key: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {_show(value)}")
        return value

    def typed(
        self,
        table: Mapping[str, Any],
        name: str,
        key: str,
        kind: type | tuple[type, ...],
        what: str,
    ) -> Any:
        value = table[name]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.fail(key, f"expected {what}, got {_show(value)}")
        return value

    def fetchable(self, table: Mapping[str, Any], name: str, key: str) -> str:
        from engine.remote import check_url

        value = self.text(table, name, key)
        problem = check_url(value)
        if problem is not None:
            raise self.fail(key, f"{problem}, got {_show(value)}")
        return value

    def url_list(self, table: Mapping[str, Any], name: str, key: str) -> tuple[str, ...]:
        from engine.remote import check_url

        urls = self.text_list(table, name, key)
        for url in urls:
            problem = check_url(url)
            if problem is not None:
                raise self.fail(key, f"{problem}, got {_show(url)}")
        return urls

    def env_name(self, table: Mapping[str, Any], name: str, key: str) -> str:
        value = self.text(table, name, key)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise self.fail(key, f"expected an environment variable name, got {_show(value)}")
        return value

    def choice(
        self, table: Mapping[str, Any], name: str, key: str, options: tuple[str, ...]
    ) -> str:
        value = table[name]
        if value not in options:
            raise self.fail(key, f"expected one of {', '.join(options)}, got {_show(value)}")
        return str(value)

    def text(self, table: Mapping[str, Any], name: str, key: str) -> str:
        value = self.typed(table, name, key, str, "a string")
        if not value.strip():
            raise self.fail(key, "expected a non-empty string")
        return str(value)

    def file(
        self, table: Mapping[str, Any], name: str, key: str, holds: FileKind | None = None
    ) -> Path:
        """The path of an existing file; with `holds`, one that holds what it should."""
        value = self.text(table, name, key)
        path = (self.root / value).resolve()
        if not path.is_file():
            raise self.fail(key, f"file not found: {value} (looked for {path})")
        if holds is not None:
            self.holds(key, value, path, holds)
        return path

    def holds(self, key: str, value: str, path: Path, kind: FileKind) -> None:
        """A ConfigError unless the file at `path` (written `value`) holds `kind`."""
        try:
            found = file_problem(path, kind)
        except OSError as exc:
            raise self.fail(key, f"cannot read {value}: {exc.strerror or exc}") from None
        if found is not None:
            raise self.fail(key, f"expected {EXPECTED_IN_FILE[kind]} in {value}, found {found}")

    def text_list(self, table: Mapping[str, Any], name: str, key: str) -> tuple[str, ...]:
        value = table[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {_show(value)}")
        return tuple(value)


NAME_ID_FORMATS = {
    "persistent": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "transient": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "emailAddress": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "unspecified": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
}


def _name_id_format(checker: _Checker, table: Mapping[str, Any], key: str) -> str:
    """A NameID format: a short name of NAME_ID_FORMATS, or a SAML format URN."""
    value = checker.text(table, "name_id_format", key)
    if value in NAME_ID_FORMATS:
        return NAME_ID_FORMATS[value]
    if value.startswith("urn:oasis:names:tc:SAML:") and ":nameid-format:" in value:
        return value
    names = ", ".join(NAME_ID_FORMATS)
    raise checker.fail(key, f"expected one of {names}, or a SAML nameid-format URN, got {value!r}")


def _code_flow(checker: _Checker, table: Mapping[str, Any], key: Callable[[str], str]) -> None:
    """The authorization code flow's settings agree: private_key_jwt has its key, the
    secret methods their secret, `openid` is among the scopes."""
    method = table.get("token_endpoint_auth_method")
    if method == "private_key_jwt" and "client_key" not in table:
        raise checker.fail(key("client_key"), "missing: private_key_jwt signs with client_key")
    if "client_key" in table and method != "private_key_jwt":
        raise checker.fail(
            key("client_key"), 'applies only with token_endpoint_auth_method = "private_key_jwt"'
        )
    if method in ("client_secret_basic", "client_secret_post") and (
        "client_secret_env" not in table
    ):
        raise checker.fail(
            key("client_secret_env"), f"missing: {method} sends the secret client_secret_env names"
        )
    if "scopes" in table and "openid" not in table["scopes"]:
        raise checker.fail(key("scopes"), 'expected "openid" among the scopes (an ID token)')


def _metadata_url(
    checker: _Checker, table: Mapping[str, Any], key: Callable[[str], str], values: dict[str, Any]
) -> None:
    """The settings of metadata fetched from a URL: a signature checked against
    `metadata_certificate` unless `metadata_signed = false` is written; refresh bounds."""
    if "metadata_url" not in table:
        for name in ("metadata_certificate", "metadata_signed", "refresh_min", "refresh_max"):
            if name in table:
                raise checker.fail(key(name), "applies only with metadata_url")
        return
    signed = values.get("metadata_signed", True)
    if signed and "metadata_certificate" not in table:
        raise checker.fail(
            key("metadata_certificate"),
            "missing: metadata from a URL is trusted only when its signature verifies with"
            " this certificate (the IdP's or federation's metadata signing certificate);"
            " metadata_signed = false accepts it unsigned",
        )
    if not signed and "metadata_certificate" in table:
        raise checker.fail(key("metadata_signed"), "false, but metadata_certificate is set")
    bounds = {"refresh_min": DEFAULT_REFRESH_MIN, "refresh_max": DEFAULT_REFRESH_MAX}
    for name in bounds:
        if name in table:
            value = checker.typed(table, name, key(name), (int, float), "seconds")
            if isinstance(value, bool) or not 60 <= value <= 30 * 86_400:
                raise checker.fail(
                    key(name), f"expected seconds from 60 to 2592000, got {_show(value)}"
                )
            bounds[name] = float(value)
    if bounds["refresh_min"] > bounds["refresh_max"]:
        raise checker.fail(key("refresh_min"), "is more than refresh_max")
    values.update(bounds)
    values["cache_dir"] = checker.root / ".jitprov" / "cache"


def _tenants(
    checker: _Checker, table: Mapping[str, Any], key: Callable[[str], str], issuer: str
) -> tuple[str, ...] | Literal["any"] | None:
    """`tenants` of a multi-tenant issuer (one `{tenantid}` in `issuer`): required, a
    non-empty list of tenant IDs or the word "any"; refused for any other issuer."""
    count = issuer.count(TENANT_PLACEHOLDER)
    if count == 0:
        if "tenants" in table:
            raise checker.fail(
                key("tenants"),
                f"applies only to an issuer with {TENANT_PLACEHOLDER}, such as"
                f' "https://login.microsoftonline.com/{TENANT_PLACEHOLDER}/v2.0"',
            )
        return None
    if count > 1 or "{" in issuer.replace(TENANT_PLACEHOLDER, ""):
        raise checker.fail(key("issuer"), f"expected {TENANT_PLACEHOLDER} once and no other braces")
    if "tenants" not in table:
        raise checker.fail(
            key("tenants"),
            f"missing: an issuer with {TENANT_PLACEHOLDER} accepts only the tenants listed"
            ' (tenants = ["<tenant id>", ...]), or every tenant when tenants = "any" is'
            " written explicitly",
        )
    raw = table["tenants"]
    if raw == "any":
        return "any"
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(t, str) and t and "/" not in t for t in raw)
    ):
        raise checker.fail(
            key("tenants"),
            f'expected a non-empty list of tenant IDs, or "any", got {_show(raw)}',
        )
    return tuple(t.lower() for t in raw)


def _show(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _store(checker: _Checker, table: dict[str, Any]) -> StoreConfig:
    if "path" in table and "url" in table:
        raise checker.fail("store", "set either path or url, not both")
    tuning: dict[str, Any] = {}
    if "migrate" in table:
        tuning["migrate"] = checker.choice(table, "migrate", "store.migrate", STORE_MIGRATE)
    if "url" not in table:
        for name in ("pool", "pool_timeout", "statement_timeout"):
            if name in table:
                raise checker.fail(f"store.{name}", "applies to a PostgreSQL store (url) only")
        raw = checker.text(table, "path", "store.path") if "path" in table else "jitprov.db"
        return StoreConfig((checker.root / raw).resolve(), None, **tuning)
    url = checker.text(table, "url", "store.url")
    if not url.startswith(("postgresql://", "postgres://")):
        raise checker.fail("store.url", f"expected a postgresql:// URL, got {_show(url)}")
    if "pool" in table:
        pool = checker.typed(table, "pool", "store.pool", int, "a whole number")
        if not 1 <= pool <= 1000:
            raise checker.fail("store.pool", f"expected a whole number from 1 to 1000, got {pool}")
        tuning["pool"] = pool
    for name, low in (("pool_timeout", 0.001), ("statement_timeout", 0.0)):
        if name in table:
            value = checker.typed(table, name, f"store.{name}", (int, float), "a number of seconds")
            if isinstance(value, bool) or not low <= value <= 86_400:
                bound = "more than 0" if low else "0 or more"
                raise checker.fail(
                    f"store.{name}", f"expected seconds, {bound} and at most 86400, got {value}"
                )
            tuning[name] = float(value)
    return StoreConfig(None, url, **tuning)


def _fields(checker: _Checker, table: dict[str, Any]) -> dict[str, FieldType]:
    fields: dict[str, FieldType] = {}
    for name, kind in table.items():
        key = f"store.fields.{name}"
        if not FIELD_NAME.match(name):
            raise checker.fail(key, "field names must match [a-z_][a-z0-9_]*")
        if name in KEYWORDS:
            raise checker.fail(key, f"{name!r} is a keyword of the rules language")
        if name in BUILTIN_FIELDS:
            raise checker.fail(key, f"{name!r} is a built-in field; it cannot be redeclared")
        if kind not in FIELD_TYPES:
            raise checker.fail(key, f"expected one of {', '.join(FIELD_TYPES)}, got {_show(kind)}")
        fields[name] = kind
    return fields


_SAML_ONLY = (
    "certificate",
    "sso_url",
    "name_id_format",
    "sp_certificate",
    "sp_key",
    "sp_encryption_certificate",
    "metadata",
    "metadata_url",
    "metadata_certificate",
    "metadata_signed",
    "refresh_min",
    "refresh_max",
    "recipient",
    "require_signed",
    "decryption_key",
    "check_cert_dates",
    "allow_sha1",
    "require_in_response_to",
)
_OIDC_ONLY = (
    "jwks",
    "client_secret_env",
    "tenants",
    "jwks_uri",
    "discovery",
    "jwks_min_refresh",
    "authorization_endpoint",
    "token_endpoint",
    "redirect_uri",
    "token_endpoint_auth_method",
    "client_key",
    "scopes",
)
_COMMON = (
    "return_urls",
    "error_url",
    "protocol",
    "issuer",
    "audience",
    "clock_skew",
    "max_token_bytes",
    "rules",
    "subject_from",
    "attributes",
    "mode",
    "link_by",
    "on_error",
    "redact",
    "record",
    "record_redacted",
    "on_disabled",
)


def _connection(
    checker: _Checker, name: str, table: dict[str, Any], fields: Mapping[str, FieldType]
) -> Connection:
    prefix = f"connections.{name}"

    def key(k: str) -> str:
        return f"{prefix}.{k}"

    checker.keys(table, prefix, {*_SAML_ONLY, *_OIDC_ONLY, *_COMMON})
    for required in ("protocol", "issuer", "audience", "rules"):
        if required not in table:
            raise checker.fail(key(required), "missing (required)")
    protocol = checker.choice(table, "protocol", key("protocol"), PROTOCOLS)
    wrong = _OIDC_ONLY if protocol == "saml2" else _SAML_ONLY
    for k in wrong:
        if k in table:
            other = "oidc" if protocol == "saml2" else "saml2"
            raise checker.fail(key(k), f'only for protocol = "{other}" connections')
    values: dict[str, Any] = {
        "id": name,
        "protocol": protocol,
        "issuer": checker.text(table, "issuer", key("issuer")),
        "audience": checker.text(table, "audience", key("audience")),
        "rules": checker.file(table, "rules", key("rules")),
    }
    optional: dict[str, Callable[[str], Any]] = {
        "recipient": lambda k: checker.text(table, k, key(k)),
        "require_signed": lambda k: checker.choice(table, k, key(k), REQUIRE_SIGNED),
        "decryption_key": lambda k: checker.file(table, k, key(k), "private_key"),
        "metadata": lambda k: checker.file(table, k, key(k), "metadata"),
        "metadata_url": lambda k: checker.fetchable(table, k, key(k)),
        "sso_url": lambda k: checker.fetchable(table, k, key(k)),
        "return_urls": lambda k: checker.url_list(table, k, key(k)),
        "error_url": lambda k: checker.fetchable(table, k, key(k)),
        "name_id_format": lambda k: _name_id_format(checker, table, key(k)),
        "authorization_endpoint": lambda k: checker.fetchable(table, k, key(k)),
        "token_endpoint": lambda k: checker.fetchable(table, k, key(k)),
        "redirect_uri": lambda k: checker.fetchable(table, k, key(k)),
        "token_endpoint_auth_method": lambda k: checker.choice(table, k, key(k), CLIENT_AUTH),
        "client_key": lambda k: checker.file(table, k, key(k), "client_key"),
        "scopes": lambda k: checker.text_list(table, k, key(k)),
        "sp_certificate": lambda k: checker.file(table, k, key(k), "certificate"),
        "sp_key": lambda k: checker.file(table, k, key(k), "private_key"),
        "sp_encryption_certificate": lambda k: checker.file(table, k, key(k), "certificate"),
        "metadata_certificate": lambda k: checker.file(table, k, key(k), "certificate"),
        "metadata_signed": lambda k: checker.typed(table, k, key(k), bool, "true or false"),
        "jwks": lambda k: checker.file(table, k, key(k), "jwks"),
        "client_secret_env": lambda k: checker.env_name(table, k, key(k)),
        "jwks_uri": lambda k: checker.fetchable(table, k, key(k)),
        "discovery": lambda k: checker.fetchable(table, k, key(k)),
        "check_cert_dates": lambda k: checker.typed(table, k, key(k), bool, "true or false"),
        "allow_sha1": lambda k: checker.typed(table, k, key(k), bool, "true or false"),
        "require_in_response_to": lambda k: checker.typed(table, k, key(k), bool, "true or false"),
        "subject_from": lambda k: checker.text(table, k, key(k)),
        "attributes": lambda k: checker.text_list(table, k, key(k)),
        "mode": lambda k: checker.choice(table, k, key(k), MODES),
        "on_error": lambda k: checker.choice(table, k, key(k), ON_ERROR),
        "redact": lambda k: checker.text_list(table, k, key(k)),
        "record": lambda k: checker.typed(table, k, key(k), bool, "true or false"),
        "record_redacted": lambda k: checker.typed(table, k, key(k), bool, "true or false"),
        "on_disabled": lambda k: checker.choice(table, k, key(k), ON_DISABLED),
    }
    for k, read in optional.items():
        if k in table:
            values[k] = read(k)
    for k in ("clock_skew", "max_token_bytes"):
        if k in table:
            number = checker.typed(table, k, key(k), int, "a whole number")
            if number < 0 or (k == "max_token_bytes" and number == 0):
                raise checker.fail(key(k), f"expected a positive whole number, got {number}")
            values[k] = number
    if "certificate" in table:
        raw = table["certificate"]
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise checker.fail(
                key("certificate"), f"expected a path or a list of paths, got {_show(raw)}"
            )
        paths = []
        for n in names:
            path = (checker.root / n).resolve()
            if not path.is_file():
                raise checker.fail(key("certificate"), f"file not found: {n} (looked for {path})")
            checker.holds(key("certificate"), n, path, "certificate")
            paths.append(path)
        values["certificates"] = tuple(paths)
    sources = ("certificate", "metadata", "metadata_url")
    if protocol == "saml2" and not any(k in table for k in sources):
        raise checker.fail(
            key("certificate"),
            "missing: a saml2 connection needs certificate, metadata or metadata_url",
        )
    if protocol == "saml2":
        _metadata_url(checker, table, key, values)
        if ("sp_certificate" in table) != ("sp_key" in table):
            given, missing = (
                ("sp_certificate", "sp_key")
                if "sp_certificate" in table
                else ("sp_key", "sp_certificate")
            )
            raise checker.fail(key(missing), f"missing: {given} and {missing} go together")
        if "sp_encryption_certificate" in table and "decryption_key" not in table:
            raise checker.fail(
                key("decryption_key"),
                "missing: sp_encryption_certificate is the certificate of decryption_key",
            )
    key_sources = ("jwks", "jwks_uri", "discovery", "client_secret_env")
    if protocol == "oidc" and not any(k in table for k in key_sources):
        raise checker.fail(
            key("jwks"),
            "missing: an oidc connection needs a jwks file, a jwks_uri or discovery URL,"
            " or client_secret_env for HS256/HS384/HS512 ID tokens",
        )
    if "jwks_uri" in table and "discovery" in table:
        raise checker.fail(
            key("jwks_uri"), "set either jwks_uri or discovery (which gives the jwks_uri)"
        )
    if "jwks_min_refresh" in table:
        value = checker.typed(
            table, "jwks_min_refresh", key("jwks_min_refresh"), (int, float), "seconds"
        )
        if isinstance(value, bool) or not 1 <= value <= 86_400:
            raise checker.fail(
                key("jwks_min_refresh"), f"expected seconds from 1 to 86400, got {_show(value)}"
            )
        values["jwks_min_refresh"] = float(value)
    if protocol == "oidc" and ("jwks_uri" in table or "discovery" in table):
        values["cache_dir"] = checker.root / ".jitprov" / "cache"
    if protocol == "oidc":
        values["tenants"] = _tenants(checker, table, key, values["issuer"])
        _code_flow(checker, table, key)
    if "link_by" in table:
        link_by = checker.text(table, "link_by", key("link_by"))
        kind = fields.get(link_by)
        if kind is None:
            raise checker.fail(key("link_by"), f"unknown field {_show(link_by)}")
        if kind == "set":
            raise checker.fail(
                key("link_by"), f"expected a single-valued field, {_show(link_by)} is a set"
            )
        values["link_by"] = link_by
    return Connection(**values)
