"""Archives signed when they are made, and verified before anything loads them (OpenSSF model signing).

A `.mar` runs arbitrary Python when TorchServe loads it. Each archive gets `<name>.mar.sig`
beside it: a Sigstore bundle over the archive's SHA-256, signed offline with an elliptic-curve
key (`model-signing`'s elliptic-key signer). `tsforge serve start` (the container's entrypoint
too) and `tsforge models register` verify each archive they will load against the trusted
public keys and refuse to go on otherwise, one line per archive naming it and the reason:
unsigned, changed (one byte is enough), or signed by a key that is not trusted.

Keys. The signing key is made on first use in `~/.config/tsforge/signing/` (mode 0600, out of
any checkout; `TSFORGE_SIGNING_KEY` names another PEM file). The trusted keys are that key's
public half, plus every `*.pem` named by `TSFORGE_TRUSTED_KEYS` (paths, or folders of them,
separated by `:`), which is how a server that did not build its archives trusts the builder.
`TSFORGE_ALLOW_UNSIGNED=1` skips verification for development, with a warning per archive; it
is off unless set.

What is checked is what loads (`loadable_store`, `admit`): TorchServe reads a store this user
cannot change, or a private copy of it whose files were verified as copied.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

SIGNATURE_SUFFIX = ".sig"
KEY_DIR = Path(os.environ.get("TSFORGE_SIGNING_DIR", Path.home() / ".config" / "tsforge" / "signing"))
SIGNING_KEY_ENV = "TSFORGE_SIGNING_KEY"
TRUSTED_KEYS_ENV = "TSFORGE_TRUSTED_KEYS"
ALLOW_UNSIGNED_ENV = "TSFORGE_ALLOW_UNSIGNED"


class SignatureError(RuntimeError):
    """One or more archives failed verification: the message has one line per archive."""


def signature_of(archive: Path) -> Path:
    return archive.with_name(archive.name + SIGNATURE_SUFFIX)


def signing_key() -> Path:
    """The private key archives are signed with: TSFORGE_SIGNING_KEY, or the user's own, made
    on first use (P-256, PKCS#8 PEM, mode 0600 in a 0700 folder)."""
    given = os.environ.get(SIGNING_KEY_ENV)
    private = Path(given) if given else KEY_DIR / "private.pem"
    if not given and not private.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        KEY_DIR.mkdir(parents=True, exist_ok=True)
        KEY_DIR.chmod(0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=KEY_DIR, prefix=".private-")  # mode 0600, a name of its own
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, private)  # only if absent: two first builds at once keep one key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    if not _public_of(private).exists():
        write_public(private, _public_of(private))
    return private


def _public_of(private: Path) -> Path:
    return private.with_name("public.pem") if private.parent == KEY_DIR else private.with_suffix(".pub.pem")


def public_key() -> Path:
    """The public half of the signing key (written beside a key given by TSFORGE_SIGNING_KEY)."""
    private = signing_key()
    public = _public_of(private)
    return public if public.exists() else write_public(private, public)


def write_public(private: Path, public: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd, tmp = tempfile.mkstemp(dir=public.parent, prefix=".public-")
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, public)
    return public


def trusted_keys() -> list[Path]:
    """The public keys an archive may be signed with."""
    keys = []
    given = os.environ.get(SIGNING_KEY_ENV)
    own = _public_of(Path(given)) if given else KEY_DIR / "public.pem"
    if own.exists():
        keys.append(own)
    for entry in filter(None, os.environ.get(TRUSTED_KEYS_ENV, "").split(":")):
        path = Path(entry)
        keys += sorted(path.glob("*.pem")) if path.is_dir() else [path]
    return keys


def sign(archive: Path, key: Path | None = None) -> Path:
    """Write `<archive>.sig`, atomically; returns its path."""
    from model_signing import signing

    signature = signature_of(archive)
    tmp = signature.with_name(f".{signature.name}.tmp")
    signing.Config().use_elliptic_key_signer(private_key=key or signing_key()).sign(archive, tmp)
    os.replace(tmp, signature)
    return signature


def problem(archive: Path, keys: list[Path]) -> str | None:
    """Why `archive` may not be loaded, or None when a trusted key signed exactly these bytes
    under exactly this file name."""
    from model_signing import verifying

    signature = signature_of(archive)
    if archive.is_symlink() or not archive.is_file():
        return "no such archive in the model store" if not archive.exists() else "a link, not an archive file"
    if not signature.is_file():
        return f"unsigned (no {signature.name}); build it again with `tsforge build`, which signs it"
    if not keys:
        return (
            f"no trusted public key (set {TRUSTED_KEYS_ENV}, or build here: the signing key's public half is trusted)"
        )
    changed = False
    for key in keys:
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=key).verify(archive, signature)
        except ValueError as e:  # model-signing's words: "Key mismatch" or "Signature mismatch"
            if "Key mismatch" in str(e):
                continue
            if "Signature mismatch" in str(e):
                changed = True
                continue
            return f"unreadable signature {signature.name} ({str(e)[:80]})"
        except Exception as e:  # a truncated signature, a trusted key file that is no key
            return f"unreadable signature {signature.name} or trusted key {key.name} ({type(e).__name__})"
        signed_as = signed_name(signature)
        if signed_as != archive.name:  # the bytes are a trusted archive's, under another name
            return f"signed as {signed_as}, not {archive.name} (a renamed or swapped archive)"
        return None
    if changed:
        return "changed since it was signed (its SHA-256 differs from the signed one)"
    return f"signed by a key that is not trusted (add its public key to {TRUSTED_KEYS_ENV})"


def signed_name(signature: Path) -> str:
    """The file name the signature was made for: its in-toto statement's subject (read only
    after the signature over that statement verified)."""
    import base64
    import json

    envelope = json.loads(signature.read_text())["dsseEnvelope"]
    return json.loads(base64.b64decode(envelope["payload"]))["subject"][0]["name"]


def verify(archives: list[Path], keys: list[Path] | None = None) -> None:
    """Refuse (SignatureError, one line per archive) unless every archive verifies; with
    TSFORGE_ALLOW_UNSIGNED=1, warn instead."""
    keys = trusted_keys() if keys is None else keys
    if os.environ.get(ALLOW_UNSIGNED_ENV) == "1":
        for archive in archives:
            print(
                f"WARNING: {archive.name} is loaded WITHOUT signature verification ({ALLOW_UNSIGNED_ENV}=1): "
                "any code in it runs. Never set this outside development.",
                file=sys.stderr,
            )
        return
    failed = [f"{archive.name}: {reason}" for archive in archives if (reason := problem(archive, keys))]
    if failed:
        raise SignatureError("refusing to load unverified archives:\n  " + "\n  ".join(failed))


def loadable_store(store: Path, private: Path) -> Path:
    """The folder TorchServe loads from, every archive in it verified (`verify`).

    A store this process cannot change (a container's: root-owned, read-only) is verified where
    it is. Any other is copied, each archive with its signature, into `private` (made afresh,
    owner-only), and the copies are verified: whoever writes `store` afterwards changes nothing
    TorchServe reads, and the management API finds no archive there that was not checked.
    """
    archives = sorted(store.glob("*.mar"))
    if not _writable(store, archives):
        verify(archives)
        return store
    if store.resolve().is_relative_to(private.resolve()):  # the fresh copy would delete the store itself
        raise SignatureError(
            f"the model store {store} lies inside {private}, where TorchServe's verified copy goes: "
            "start from a run folder that does not hold the store"
        )
    shutil.rmtree(private, ignore_errors=True)
    private.mkdir(mode=0o700, parents=True)
    for archive in archives:
        _copy_with_signature(archive, private)
    verify(sorted(private.glob("*.mar")))
    return private


def admit(archive: Path, private: Path) -> Path:
    """`archive` copied into the private store `private` once its copy verifies (the copy, not
    the original, so it cannot change in between); an older copy is replaced. Returns the copy."""
    staging = Path(tempfile.mkdtemp(dir=private, prefix=".admit-"))
    try:
        _copy_with_signature(archive, staging)
        verify([staging / archive.name])
        for path in (signature_of(staging / archive.name), staging / archive.name):
            if path.exists():  # the signature first: the archive appears only beside its own
                os.replace(path, private / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return private / archive.name


def _writable(store: Path, archives: list[Path]) -> bool:
    """Whether this process could change what is in `store` (or rename it away)."""
    return any(os.access(p, os.W_OK) for p in (store, store.resolve().parent, *archives))


def _copy_with_signature(archive: Path, folder: Path) -> None:
    for path in (archive, signature_of(archive)):
        if path.is_symlink() or path.exists():  # a link stays a link, which verification refuses
            shutil.copy2(path, folder / path.name, follow_symlinks=False)
