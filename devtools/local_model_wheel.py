"""Install the `local-model` extra with llama-cpp-python built once per version and build flags.

`python -m devtools.local_model_wheel requirements/local-model.txt` is what `make
install-local-model` runs, with the build flags in `CMAKE_ARGS`. llama-cpp-python has no binary
wheels on PyPI, so pip compiles llama.cpp from its source (minutes). The wheel that build makes
is kept in `~/.cache/reflection-playground/wheels/<version>-<flags>/` (`XDG_CACHE_HOME` moves
it), where `<flags>` is a digest of `CMAKE_ARGS`, and every later install takes it from there.

pip's own wheel cache stays out of it (`--no-cache-dir`): it keys a built wheel by the source
alone, so it would hand back a build made with other flags, such as one tuned for another CPU
(which crashed on its first token, see the Makefile). Here a wheel is reused only for the same
version and exactly the same flags.

The version and the source's hashes come from the lock file (`make lock`), so the source built
is the one locked, and the rest of the lock is installed hash-checked after the wheel.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "llama-cpp-python"
# A requirement line of a lock file, continuation lines joined: the pin and its hashes.
_PIN = re.compile(r"^llama-cpp-python(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]  # `--hash=sha256:…` options, as the lock file writes them

    def requirement(self) -> str:
        """The pin as a requirements line that pip checks the downloaded source against."""
        return " ".join((f"{PACKAGE}=={self.version}", *self.hashes))


def locked_pin(lock_text: str) -> Pin:
    """llama-cpp-python's version and hashes in a lock file; ValueError when it is not pinned."""
    for line in lock_text.replace("\\\n", " ").splitlines():
        match = _PIN.match(line)
        if match:
            hashes = tuple(_HASH.findall(line))
            if not hashes:
                raise ValueError(f"{PACKAGE} is pinned without hashes: run `make lock`")
            return Pin(match["version"], hashes)
    raise ValueError(f"{PACKAGE} is not pinned in the lock file: run `make lock`")


def cache_root(env: dict[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reflection-playground" / "wheels"


def wheel_dir(root: Path, version: str, cmake_args: str) -> Path:
    """Where the wheel of this version built with these flags is kept (flags as given: another
    spelling of the same flags builds once more, never reuses a wheel made with others)."""
    digest = hashlib.sha256(cmake_args.encode()).hexdigest()[:16]
    return root / f"{version}-{digest}"


def cached_wheel(directory: Path, version: str) -> Path | None:
    wheels = sorted(directory.glob(f"llama_cpp_python-{version}-*.whl"))
    return wheels[0] if wheels else None


def build_wheel(pin: Pin, directory: Path, env: dict[str, str]) -> Path:
    """Compile the locked source into `directory`; a build that fails or is interrupted leaves
    nothing there, and of two builds at once the first to finish is kept."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".building-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(pin.requirement() + "\n")
        built = Path(scratch) / "wheel"
        pip(
            "wheel", "--no-deps", "--no-cache-dir", "--require-hashes",
            "--wheel-dir", str(built), "-r", str(requirements),
            env=env,
        )  # fmt: skip
        if cached_wheel(built, pin.version) is None:
            raise SystemExit(f"pip built no {PACKAGE} {pin.version} wheel")
        try:
            built.rename(directory)
        except OSError:
            if cached_wheel(directory, pin.version) is None:
                raise
    wheel = cached_wheel(directory, pin.version)
    if wheel is None:
        raise SystemExit(f"no {PACKAGE} {pin.version} wheel in {directory}")
    return wheel


def pip(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], env=env, check=True)


def install(lock_file: Path, env: dict[str, str]) -> Path:
    """Build llama-cpp-python's wheel unless it is cached, install it, then the rest of the lock.
    Returns the wheel used."""
    pin = locked_pin(lock_file.read_text())
    directory = wheel_dir(cache_root(env), pin.version, env.get("CMAKE_ARGS", ""))
    wheel = cached_wheel(directory, pin.version)
    if wheel is None:
        print(f"building {PACKAGE} {pin.version} into {directory} (compiles llama.cpp: minutes)")
        wheel = build_wheel(pin, directory, env)
    else:
        print(f"{PACKAGE} {pin.version} from {wheel}")
    # A build with other flags may be installed already: the same version would count as there.
    pip("install", "--quiet", "--no-deps", "--force-reinstall", str(wheel), env=env)
    # The lock's pin is now satisfied, so pip neither downloads nor builds it again.
    pip("install", "--quiet", "--no-cache-dir", "--require-hashes", "-r", str(lock_file), env=env)
    return wheel


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m devtools.local_model_wheel requirements/local-model.txt")
    try:
        install(Path(argv[0]), dict(os.environ))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
