"""A station's trust store: which public keys it trusts, for which roles, and when.

File format (YAML, read strictly: unknown keys, wrong types and naive times are
errors naming the file, line and key)::

    keys:
      - public: keys/alice.pub.json      # path relative to the keyring file
        roles: [methodologist]           # roles this key is trusted for
        valid_from: 2026-01-01T00:00:00Z
        valid_until: 2027-01-01T00:00:00Z   # optional, exclusive
        revoked_at: 2026-06-01T00:00:00Z    # optional; revoked from this instant on
      - public: keys/bob.pub.json
        roles: [requester]
        user: bob                        # optional; the user this key speaks for
                                         # (default: the name in its identity file)
        requester_roles: [analyst]       # the roles its requests may claim
        valid_from: 2026-01-01T00:00:00Z

A key may be listed only for the role its identity file declares (a station key can
never pass as a methodologist). Times need a time zone. A key is good at time ``t``
when ``valid_from <= t < valid_until`` and not ``revoked_at <= t``.

``user`` and ``requester_roles`` are for requester keys only. A request's user and
organisation are the keyring's, not the requester's word: a signed request must name
its key's ``user`` and may claim only a role listed in ``requester_roles``. A requester
key without ``requester_roles`` may claim no role at all (fail closed).

Typical use at a station::

    keyring = Keyring.load(Path("keyring.yaml"))
    payload, key_id = verify_envelope(env, TRAIN_MANIFEST_TYPE,
                                      keyring.trusted("methodologist", at=now))
    signer = keyring.check(key_id, "methodologist", now)
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pht import yamlcfg
from pht.crypto import ROLES, PublicIdentity, load_public
from pht.errors import ConfigError, TrustError
from pht.timefmt import TimeFormatError, format_iso_z, parse_utc, utc_now

__all__ = ["USER_PATTERN", "REQUESTER_ROLE_PATTERN", "Keyring", "KeyringEntry"]

_ENTRY_KEYS = {
    "public",
    "roles",
    "valid_from",
    "valid_until",
    "revoked_at",
    "user",
    "requester_roles",
}
USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A user name: 1-64 letters, digits, '.', '_' or '-' (use with ``fullmatch``)."""
REQUESTER_ROLE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
"""A role a requester may claim, such as ``analyst`` (use with ``fullmatch``)."""


def _aware(when: datetime, what: str) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {when!r}")
    return when


@dataclass(frozen=True)
class KeyringEntry:
    """One trusted key: its public identity, roles and validity window.

    Attributes
    ----------
    identity
        The public identity loaded from ``public_path``.
    public_path
        Absolute path of the ``.pub.json`` file.
    roles
        Roles this key is trusted for.
    valid_from
        First instant the key is good (inclusive).
    valid_until
        First instant the key is no longer good (exclusive), or None.
    revoked_at
        Instant from which the key is revoked, or None.
    user
        The user a requester key speaks for; empty means the identity's name (the
        value is filled in, so it is never empty on an entry).
    requester_roles
        The roles requests signed by this key may claim; empty: none.
    """

    identity: PublicIdentity
    public_path: Path
    roles: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    user: str = ""
    requester_roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.user:
            object.__setattr__(self, "user", self.identity.name)

    @property
    def key_id(self) -> str:
        """The key id of the identity."""
        return self.identity.key_id

    def problem(self, role: str, at: datetime) -> str | None:
        """Why this key may not sign as ``role`` at ``at``, or None if it may."""
        who = self.identity.describe()
        if role not in self.roles:
            return (
                f"{who} is trusted for {', '.join(self.roles)}, not for {role}; "
                "use a key listed for that role in the keyring"
            )
        if self.revoked_at is not None and self.revoked_at <= at:
            return f"{who} was revoked at {format_iso_z(self.revoked_at)}"
        if at < self.valid_from:
            return (
                f"{who} is not valid yet: valid from "
                f"{format_iso_z(self.valid_from)}, checked at {format_iso_z(at)}"
            )
        if self.valid_until is not None and at >= self.valid_until:
            return (
                f"{who} expired at {format_iso_z(self.valid_until)}, checked at "
                f"{format_iso_z(at)}; ask its owner for a new key or extend valid_until"
            )
        return None


def _check_roles(roles: Iterable[str], identity: PublicIdentity) -> tuple[str, ...]:
    """Validate roles; the message has no location (callers add it)."""
    result = tuple(roles)
    if not result:
        raise ConfigError("roles must list at least one role")
    for role in result:
        if role not in ROLES:
            raise ConfigError(
                f"role {role!r} is not one of {', '.join(ROLES)}; fix the spelling"
            )
    if len(set(result)) != len(result):
        raise ConfigError(f"roles {list(result)} lists a role twice; keep one")
    wrong = [role for role in result if role != identity.role]
    if wrong:
        raise ConfigError(
            f"{identity.describe()} declares role {identity.role!r} but is listed for "
            f"{wrong[0]!r}; list only the role its identity file declares"
        )
    return result


def _check_requester(
    roles: tuple[str, ...], user: str | None, requester_roles: Iterable[str] | None
) -> tuple[str, tuple[str, ...]]:
    """Validate ``user`` and ``requester_roles``; the message has no location."""
    if "requester" not in roles and (user is not None or requester_roles is not None):
        raise ConfigError(
            "user and requester_roles are only for requester keys; remove them"
        )
    if user is not None and not USER_PATTERN.fullmatch(user):
        raise ConfigError(
            "user must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    result = () if requester_roles is None else tuple(requester_roles)
    if requester_roles is not None and not result:
        raise ConfigError(
            "requester_roles must list at least one role, such as [analyst]; leave "
            "it out to let this key claim no role"
        )
    for role in result:
        if not REQUESTER_ROLE_PATTERN.fullmatch(role):
            raise ConfigError(
                "requester_roles must be lower-case names such as analyst (letters, "
                "digits, '_' or '-', at most 32)"
            )
    if len(set(result)) != len(result):
        raise ConfigError("requester_roles lists a role twice; keep one")
    return user or "", result


def _check_window(
    valid_from: datetime, valid_until: datetime | None
) -> tuple[datetime, datetime | None]:
    if valid_until is not None and valid_until <= valid_from:
        raise ConfigError(
            f"valid_until {format_iso_z(valid_until)} must be after valid_from "
            f"{format_iso_z(valid_from)}"
        )
    return valid_from, valid_until


def _time(node: yamlcfg.Node) -> datetime:
    """Read a timezone-aware datetime from a YAML timestamp or ISO string."""
    value = node.value()
    hint = "give a date and time with a time zone, such as 2026-01-01T00:00:00Z"
    if isinstance(value, str):
        try:
            value = parse_utc(value)
        except TimeFormatError as exc:
            raise node.error(f"time {yamlcfg.quote(value)} {exc}; {hint}") from None
    if not isinstance(value, datetime):
        kind = "a date without a time" if isinstance(value, date) else repr(value)
        raise node.error(f"expected a time, got {kind}; {hint}")
    if value.tzinfo is None:
        raise node.error(f"time {value.isoformat()} has no time zone; {hint}")
    return value


class Keyring:
    """A station's trusted public keys (see the module docstring for the format).

    Parameters
    ----------
    entries
        Initial entries; their key ids must be distinct.
    """

    def __init__(self, entries: Iterable[KeyringEntry] = ()) -> None:
        self._entries: dict[str, KeyringEntry] = {}
        for entry in entries:
            if entry.key_id in self._entries:
                raise ConfigError(f"{entry.identity.describe()} is listed twice")
            self._entries[entry.key_id] = entry

    # -- reading ----------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read a keyring YAML file; public key paths are relative to it.

        Raises
        ------
        ConfigError
            Malformed YAML, unknown or missing keys, bad roles or times, a missing
            public key file, a key listed twice (messages name file, line and key).
        TrustError
            A public key file whose key material is malformed.
        """
        path = Path(path)
        document = yamlcfg.load(path)
        raw = document.value()
        if isinstance(raw, dict) and str(raw.get("format", "")).startswith(
            "pht.identity/"
        ):
            raise ConfigError(
                f"{path}: this is a key file ({raw.get('role')} "
                f"{raw.get('organisation')}/{raw.get('name')}), not a keyring; give the "
                "keyring.yaml that lists the keys you trust"
            )
        root = document.mapping({"keys"})
        base = path.parent
        entries: list[KeyringEntry] = []
        seen: dict[str, str] = {}
        for node in root.require("keys").items():
            entry = _entry(node, base)
            if entry.key_id in seen:
                first = seen[entry.key_id]
                raise node.error(
                    f"{entry.identity.describe()} is already listed at {first}; keep "
                    "one entry per key"
                )
            seen[entry.key_id] = node.where
            entries.append(entry)
        return cls(entries)

    @property
    def entries(self) -> tuple[KeyringEntry, ...]:
        """All entries, in file order."""
        return tuple(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[KeyringEntry]:
        return iter(self.entries)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def get(self, key_id: str) -> KeyringEntry | None:
        """The entry of ``key_id``, or None if the keyring does not list it."""
        return self._entries.get(key_id)

    def trusted(
        self, role: str, at: datetime | None = None
    ) -> dict[str, Ed25519PublicKey]:
        """Signing keys good for ``role`` at ``at`` (default: now), by key id.

        Pass the result to :func:`pht.crypto.verify_envelope`; revoked, expired and
        not-yet-valid keys are left out.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        when = utc_now() if at is None else _aware(at, "at")
        return {
            key_id: entry.identity.signing_key
            for key_id, entry in self._entries.items()
            if entry.problem(role, when) is None
        }

    def check(self, key_id: str, role: str, at: datetime) -> PublicIdentity:
        """Return the identity of ``key_id`` if it may act as ``role`` at ``at``.

        Raises
        ------
        TrustError
            Unknown key, wrong role, revoked (``revoked_at <= at``), not yet valid,
            or expired; a one-line reason naming the key id and name.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        _aware(at, "at")
        entry = self._entries.get(key_id)
        if entry is None:
            raise TrustError(
                f"key {key_id} is not in the keyring; add its public key to the "
                "keyring if it should be trusted"
            )
        problem = entry.problem(role, at)
        if problem is not None:
            raise TrustError(problem)
        return entry.identity

    # -- managing ----------------------------------------------------------------
    def add(
        self,
        public_path: Path,
        *,
        roles: Iterable[str],
        valid_from: datetime,
        valid_until: datetime | None = None,
        user: str | None = None,
        requester_roles: Iterable[str] | None = None,
    ) -> KeyringEntry:
        """Trust the public key in ``public_path`` for ``roles`` from ``valid_from``.

        ``user`` (default: the identity's name) and ``requester_roles`` (default:
        none, so its requests are refused) apply to requester keys only.

        Raises
        ------
        ConfigError
            The file cannot be read, the roles, user, requester roles or window are
            invalid, or the key is already in the keyring.
        TrustError
            The public key file holds malformed key material.
        """
        path = Path(public_path).resolve()
        identity = load_public(path)
        if identity.key_id in self._entries:
            raise ConfigError(
                f"{identity.describe()} is already in the keyring; revoke or edit "
                "the existing entry instead"
            )
        try:
            checked = _check_roles(roles, identity)
            who, claims = _check_requester(checked, user, requester_roles)
            start, end = _check_window(
                _aware(valid_from, "valid_from"),
                None if valid_until is None else _aware(valid_until, "valid_until"),
            )
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        entry = KeyringEntry(
            identity, path, checked, start, end, user=who, requester_roles=claims
        )
        self._entries[entry.key_id] = entry
        return entry

    def revoke(self, key_id: str, at: datetime) -> KeyringEntry:
        """Mark ``key_id`` revoked from ``at`` on (an earlier revocation is kept)."""
        _aware(at, "at")
        entry = self._entries.get(key_id)
        if entry is None:
            raise ConfigError(f"key {key_id} is not in the keyring; nothing to revoke")
        if entry.revoked_at is not None and entry.revoked_at <= at:
            return entry
        entry = replace(entry, revoked_at=at)
        self._entries[key_id] = entry
        return entry

    def save(self, path: Path) -> None:
        """Write the keyring as YAML (atomically), with paths relative to ``path``."""
        path = Path(path)
        base = path.parent.resolve()
        items = []
        for entry in self._entries.values():
            try:
                public = Path(os.path.relpath(entry.public_path, base)).as_posix()
            except ValueError:  # another drive on Windows
                public = entry.public_path.as_posix()
            item: dict[str, object] = {
                "public": public,
                "roles": list(entry.roles),
                "valid_from": format_iso_z(entry.valid_from),
            }
            if entry.valid_until is not None:
                item["valid_until"] = format_iso_z(entry.valid_until)
            if entry.revoked_at is not None:
                item["revoked_at"] = format_iso_z(entry.revoked_at)
            if entry.user != entry.identity.name:
                item["user"] = entry.user
            if entry.requester_roles:
                item["requester_roles"] = list(entry.requester_roles)
            items.append(item)
        text = yaml.safe_dump({"keys": items}, sort_keys=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _entry(node: yamlcfg.Node, base: Path) -> KeyringEntry:
    """Parse one ``keys[i]`` mapping."""
    fields = node.mapping(_ENTRY_KEYS)
    public_node = fields.require("public")
    public_path = (base / public_node.as_str()).resolve()
    try:
        identity = load_public(public_path)
    except ConfigError as exc:
        raise public_node.error(f"cannot use public key file: {exc}") from None
    except TrustError as exc:
        raise TrustError(
            f"{public_node.file}:{public_node.line}: {public_node.where}: {exc}"
        ) from None
    roles_node = fields.require("roles")
    listed = roles_node.as_str_list()
    try:
        roles = _check_roles(listed, identity)
    except ConfigError as exc:
        raise roles_node.error(str(exc)) from None
    valid_from = _time(fields.require("valid_from"))
    until_node = fields.get("valid_until")
    valid_until = None if until_node is None else _time(until_node)
    revoked_node = fields.get("revoked_at")
    revoked_at = None if revoked_node is None else _time(revoked_node)
    try:
        _check_window(valid_from, valid_until)
    except ConfigError as exc:
        raise (until_node or node).error(str(exc)) from None
    user_node = fields.get("user")
    claims_node = fields.get("requester_roles")
    try:
        user, claims = _check_requester(
            roles,
            None if user_node is None else user_node.as_str(),
            None if claims_node is None else claims_node.as_str_list(),
        )
    except ConfigError as exc:
        raise (user_node or claims_node or node).error(str(exc)) from None
    return KeyringEntry(
        identity,
        public_path,
        roles,
        valid_from,
        valid_until,
        revoked_at,
        user=user,
        requester_roles=claims,
    )
