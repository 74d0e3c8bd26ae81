#!/usr/bin/env python3
"""An emulated aarch64 board (a Raspberry Pi 5's Cortex-A76, or a Pi 4's Cortex-A72) on this x86
machine, for proving the toolkit on ARM: correctness, never speed (emulation is 55-280x slower).

    tools/board-aarch64 --bundle BUNDLE [--cpu cortex-a76|cortex-a72] -- resnet-eval BUNDLE IMAGES
    tools/board-aarch64 --bundle BUNDLE -- python -c "import deploy; ..."

A Debian 12 arm64 userland (`debootstrap --foreign --variant=minbase --include=python3`, its
packages unpacked with `dpkg-deb -x` instead of the emulated second stage), cached under the
user's cache folder; QEMU's user-mode emulator (`qemu-aarch64-static -L ROOT`, no binfmt, chroot
or privileges for it) runs that userland's Python 3.11. The toolkit is installed there from a
bundle's own wheelhouse (`resnet-deploy bundle --wheels aarch64`) by pip running on the emulated
board with no network (`--no-index`, in a network namespace of its own where `unshare -n` can make
one), into a folder cached by the wheelhouse's hash. QEMU 7.2 shows the guest the host's x86
/proc/cpuinfo (ONNX Runtime then crashes), so the emulated CPU's own cpuinfo goes at the root's
/proc/cpuinfo, matching `QEMU_CPU` (ONNX Runtime picks its kernels from it: an A76 cpuinfo on an
emulated A72 dies in INT8 with SIGILL). Pip never runs on the host for the board.

Needs Debian's `qemu-user-static` and `debootstrap`: installed here with apt when missing and
running as root; else one sentence saying so (exit status 2). tests/deploy/test_board_aarch64.py
runs this on every `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPUINFO = ROOT / "tests" / "data" / "cpuinfo"
CPUS = ("cortex-a76", "cortex-a72")
SUITE, PYTHON = "bookworm", "usr/bin/python3.11"
SCRIPTS = {"resnet-deploy", "resnet-eval", "resnet-bench", "resnet-export", "resnet-build", "resnet-compare"}


class BoardError(Exception):
    """Why the emulated board can't run here, in one sentence."""


def cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "resnet-deploy-toolkit" / "aarch64"


def ensure_tools() -> None:
    """qemu-aarch64-static and debootstrap, installed with apt where missing and allowed."""
    missing = [tool for tool in ("qemu-aarch64-static", "debootstrap") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BoardError(
            f"the emulated board needs {' and '.join(missing)}: apt-get install qemu-user-static debootstrap, as root"
        )
    install = ["apt-get", "install", "-y", "-q", "qemu-user-static", "debootstrap"]
    done = subprocess.run(
        install, capture_output=True, text=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    )
    if done.returncode != 0:  # the package lists may be stale: once more after an update
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
        done = subprocess.run(install, capture_output=True, text=True)
    if done.returncode != 0:
        raise BoardError(f"apt-get install qemu-user-static debootstrap failed: {done.stderr.strip()[-200:]}")


def mirror() -> str:
    """The Debian mirror this machine's apt uses (its deb822 sources), else Debian's own."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    found = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M) if sources.is_file() else None
    return found.group(1) if found else "http://deb.debian.org/debian"


@contextlib.contextmanager
def cache_lock(wait_s: float = 1800):
    """The cache's lock (a `flock` on its `.lock`), held while the cache is changed: what is built,
    installed or pruned there is the holder's; another run waits for it, at most `wait_s`."""
    cache().mkdir(parents=True, exist_ok=True)
    with open(cache() / ".lock", "a") as lock:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BoardError(f"another run has held {cache() / '.lock'} for {wait_s:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_rootfs() -> Path:
    """The arm64 userland, built once into the cache (a folder renamed into place when whole)."""
    root = cache() / f"{SUITE}-rootfs"
    if (root / ".complete").is_file():
        return root
    with cache_lock():
        if (root / ".complete").is_file():  # built by the run that held the lock before
            return root
        return _build_rootfs(root)


def _build_rootfs(root: Path) -> Path:
    ensure_tools()
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    command = ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3", SUITE,
               str(building), mirror()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise BoardError(f"debootstrap could not fetch Debian's arm64 packages: {done.stdout.strip()[-200:]}")
    archives = building / "var" / "cache" / "apt" / "archives"
    for package in sorted(archives.glob("*.deb")):  # the second stage, without emulating dpkg
        subprocess.run(["dpkg-deb", "-x", str(package), str(building)], check=True)
        package.unlink()
    if not (building / PYTHON).is_file():
        raise BoardError("the arm64 userland has no Python 3.11 after unpacking (debootstrap changed?)")
    (building / "proc").mkdir(exist_ok=True)
    (building / ".complete").write_text("debootstrap --foreign + dpkg-deb -x\n")
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)
    return root


class Board:
    """The emulated board: its root, its CPU, and the toolkit installed from a wheelhouse."""

    def __init__(self, cpu: str = "cortex-a76") -> None:
        if cpu not in CPUS:
            raise BoardError(f"--cpu takes {' or '.join(CPUS)}, not {cpu!r}")
        self.root, self.cpu = ensure_rootfs(), cpu
        self.site: Path | None = None

    def install(self, bundle: Path, site: Path | None = None) -> Path:
        """The toolkit from `bundle`'s wheelhouse, installed by pip on the board with no network (as
        the bundle's README says), into `site`; by default into the cache, keyed by the
        requirements' hashes (the same wheels, the same install), keeping the two used last."""
        requirements = bundle / "board-requirements.txt"
        if not requirements.is_file():
            raise BoardError(f"{bundle} carries no wheelhouse: write it with resnet-deploy bundle ... --wheels aarch64")
        if site is None:  # the cache's: changed under its lock
            site = cache() / "sites" / hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
            with cache_lock():
                _prune(site.parent, keep=site)
                return self._install(bundle, requirements, site)
        return self._install(bundle, requirements, site)

    def _install(self, bundle: Path, requirements: Path, site: Path) -> Path:
        if not (site / ".complete").is_file():
            if site.exists() and site.parent != cache() / "sites":
                raise BoardError(f"{site} exists and holds no install of this tool: give a new folder")
            shutil.rmtree(site, ignore_errors=True)  # a broken install of the cache's (under its lock)
            pip = next((bundle / "wheels").glob("pip-*.whl"), None)
            if pip is None:
                raise BoardError(f"{bundle}/wheels has no wheel of pip to install with")
            done = self.run([str(pip / "pip"), "install", "--no-index", "--find-links", str(bundle / "wheels"),
                             "--require-hashes", "-r", str(requirements), "--target", str(site), "--no-compile",
                             "--quiet", "--disable-pip-version-check"])  # fmt: skip
            if done.returncode != 0:
                raise BoardError(f"pip on the board could not install the wheelhouse: {done.stderr.strip()[-300:]}")
            (site / ".complete").write_text(requirements.read_text())
        os.utime(site / ".complete")  # used now: pruned last
        self.site = site
        return site

    def command(self, argv: list[str]) -> list[str]:
        """A console script's or Python's command line on the board (as the emulated Python's)."""
        if argv and argv[0] in SCRIPTS:
            argv = ["-c", f"from toolkit.launch import launch; launch({argv[0]!r})", *argv[1:]]
        elif argv and argv[0] in ("python", "python3"):
            argv = argv[1:]
        network = ["unshare", "-n"] if _can_unshare() else []
        return [*network, "qemu-aarch64-static", "-L", str(self.root), str(self.root / PYTHON), *argv]

    def run(self, argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
        """`argv` on the board (see `command`), its CPU's cpuinfo in place, a clean environment."""
        shutil.copyfile(CPUINFO / f"{self.cpu}.txt", self.root / "proc" / "cpuinfo")
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(cache()), "QEMU_CPU": self.cpu, "LANG": "C.UTF-8"}
        if self.site is not None:
            environment["PYTHONPATH"] = str(self.site)
        return subprocess.run(self.command(argv), capture_output=True, text=True, env=environment, timeout=timeout)


def _prune(sites: Path, keep: Path, hours: float = 1.0) -> None:
    """The cached installs but the two used last (and `keep`), where unused for `hours`: each new
    wheel of the toolkit makes a new one (~200 MB)."""
    if not sites.is_dir():
        return
    installs = [site for site in sites.iterdir() if site != keep and (site / ".complete").is_file()]
    installs.sort(key=lambda site: (site / ".complete").stat().st_mtime, reverse=True)
    for site in installs[1:]:
        if time.time() - (site / ".complete").stat().st_mtime > hours * 3600:
            shutil.rmtree(site, ignore_errors=True)


def _can_unshare() -> bool:
    """Whether a process can be put in a network namespace of its own here (root, or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/board-aarch64", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", default="cortex-a76", choices=CPUS)
    parser.add_argument(
        "--bundle", type=Path, help="A bundle with a wheelhouse for aarch64: the toolkit installed from it"
    )
    parser.add_argument("--prepare", action="store_true", help="Only build the cached userland")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- then a console script (or python) and its arguments"
    )
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    try:
        board = Board(arguments.cpu)
        if arguments.prepare:
            print(board.root)
            return 0
        if arguments.bundle is not None:
            board.install(arguments.bundle)
        if not command:
            parser.error("give a command after --")
        done = board.run(command)
    except BoardError as error:
        print(f"board-aarch64: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
