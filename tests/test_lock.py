"""The lock file pins every package the install brought in, at the version installed."""

import re
from importlib.metadata import distributions
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} in requirements.lock is not an exact pin"
            pins[canonical(name)] = version
    return pins


def test_every_installed_package_is_pinned_at_its_installed_version():
    pins = locked()
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    installed.pop("parley")
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in requirements.lock (run `make upgrade`): {unpinned}"
    # torch's local label (+cpu) is left out of the lock on purpose (see the Makefile's upgrade target).
    moved = {name: (pins[name], version) for name, version in installed.items()
             if version.split("+")[0] != pins[name]}
    assert not moved, f"installed versions differ from requirements.lock (lock, installed): {moved}"
