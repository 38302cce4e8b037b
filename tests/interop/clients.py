"""Third-party BitTorrent clients on loopback, for the interop tier.

Each wrapper starts its client listening on 127.0.0.1 only, with DHT, LSD,
UPnP and NAT-PMP off, or with its DHT bootstrapped only from a bitswarm node
on 127.0.0.1 (shared INTEROP-NOTES.md has the settings and the quirks). Every
process is killed on exit, and every wait is bounded by a timeout.

- :class:`Libtorrent`: an in-process ``libtorrent.session`` (2.1, PyPI).
- :class:`Aria2`: an ``aria2c`` process (1.36).
- :class:`Transmission`: a ``transmission-cli`` process (3.00).
- :class:`OpenTracker`: an ``opentracker`` process with a whitelist.
- ``mktorrent`` / ``transmission-create`` / ``transmission-show`` /
  ``aria2c -S``: torrent makers and readers (:func:`run_tool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import pytest

from dht import PeerAddr
from tests.conftest import require_tool

LOOPBACK = "127.0.0.1"
# Seconds given to a client process to stop on SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 3.0
# Seconds a torrent maker or reader may run (they hash a few MiB at most).
TOOL_TIMEOUT_S = 30.0


def require_libtorrent() -> ModuleType:
    """``import libtorrent``: a skip locally, a failure in CI (like require_tool)."""
    try:
        import libtorrent
    except ImportError:
        if os.environ.get("CI") == "true" or os.environ.get("BITSWARM_REQUIRE_INTEROP"):
            pytest.fail("libtorrent (pip install libtorrent) is required in CI")
        pytest.skip("libtorrent (Python bindings) is not installed")
    return libtorrent


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP, for a client that
    cannot bind port 0 itself (aria2, Transmission, opentracker)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


async def wait_until(
    pred: Callable[[], bool],
    timeout_s: float,
    what: str,
    *,
    step_s: float = 0.05,
    poll: Callable[[], object] | None = None,
) -> None:
    """Poll ``pred`` (after ``poll``) until it holds; fail after ``timeout_s``.

    The clients signal nothing awaitable (another process, or libtorrent's
    own threads), so the condition itself is polled, never a fixed sleep.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if poll is not None:
            poll()
        if pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what}"
            )
        await asyncio.sleep(step_s)


async def run_tool(*args: str, timeout_s: float = TOOL_TIMEOUT_S) -> str:
    """Run a command to completion; its stdout (stderr joined), or a failure."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}: {text[-2000:]}")
    return text


def tree_bytes(root: Path, *, skip_empty: bool = False) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    files = {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    return {k: v for k, v in files.items() if v or not skip_empty}


def same_tree(out: Path, src: Path, *, skip_empty: bool = False) -> bool:
    """``out`` holds exactly the files of ``src``, byte for byte.

    Args:
        skip_empty: leave empty files out of the comparison, for clients
            that never create them (Transmission 3.00).
    """
    if not out.exists():
        return False
    try:
        return tree_bytes(out, skip_empty=skip_empty) == tree_bytes(
            src, skip_empty=skip_empty
        )
    except OSError:  # a client renamed a file under us
        return False


# --- processes ----------------------------------------------------------------


class _Process:
    """A client process whose output goes to a log file; killed on exit."""

    name = "client"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def _spawn(self, *args: str, cwd: Path | None = None) -> None:
        # A local file opened once per process start; not worth a thread.
        with open(self.log_path, "ab") as log_file:  # noqa: ASYNC230
            self.proc = await asyncio.create_subprocess_exec(
                *args,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=cwd,
            )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        try:
            async with asyncio.timeout(timeout_s):
                return await self.proc.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} still running after {timeout_s:.0f} s:\n"
                f"{self.log_text()[-3000:]}"
            ) from None

    async def __aenter__(self) -> _Process:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Aria2(_Process):
    """``aria2c`` downloading or seeding one torrent or magnet.

    Args:
        target: a .torrent path or a magnet URI.
        out_dir: the download folder (``-d``); for seeding, where the data is.
        workdir: scratch folder for its log and DHT file.
        seed: keep seeding after completion (``--seed-ratio=0``, no time
            limit) instead of exiting once done.
        tracker: replace the torrent's trackers by this URL.
        dht_entry: join the DHT only through this node (else DHT is off).
    """

    name = "aria2c"

    def __init__(
        self,
        target: str | Path,
        out_dir: Path,
        workdir: Path,
        *,
        seed: bool = False,
        tracker: str | None = None,
        dht_entry: PeerAddr | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "aria2.log")
        self.exe = require_tool("aria2c")
        self.target = str(target)
        self.out_dir = out_dir
        self.workdir = workdir
        self.seed = seed
        self.tracker = tracker
        self.dht_entry = dht_entry
        self.extra = tuple(extra)
        self.port = free_port()
        self.dht_port = free_port() if dht_entry is not None else None

    @property
    def address(self) -> PeerAddr:
        return PeerAddr(LOOPBACK, self.port)

    def args(self) -> list[str]:
        args = [
            self.exe,
            "--no-conf=true",
            "--enable-rpc=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            f"--interface={LOOPBACK}",
            "--async-dns=false",
            f"--listen-port={self.port}",
            "--console-log-level=notice",
            "--summary-interval=0",
            "--file-allocation=none",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "--bt-save-metadata=false",
            "--bt-stop-timeout=0",
            "--bt-tracker-interval=1",
            "--bt-tracker-connect-timeout=5",
            "--bt-tracker-timeout=5",
            "--follow-torrent=mem",
            f"--dir={self.out_dir}",
        ]
        if self.dht_entry is not None:
            args += [
                "--enable-dht=true",
                "--enable-dht6=false",
                f"--dht-listen-port={self.dht_port}",
                f"--dht-entry-point={self.dht_entry}",
                f"--dht-file-path={self.workdir / 'dht.dat'}",
            ]
        else:
            args += ["--enable-dht=false", "--enable-dht6=false"]
        if self.tracker is not None:
            args += ["--bt-exclude-tracker=*", f"--bt-tracker={self.tracker}"]
        if self.seed:
            args += ["--seed-ratio=0.0", "--check-integrity=true"]
        else:
            args += ["--seed-time=0"]
        return [*args, *self.extra, self.target]

    async def __aenter__(self) -> Aria2:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        await self._spawn(*self.args(), cwd=self.workdir)
        return self


TRANSMISSION_SETTINGS: dict[str, Any] = {
    "dht-enabled": False,
    "lpd-enabled": False,
    "pex-enabled": False,
    "port-forwarding-enabled": False,
    "utp-enabled": False,
    "blocklist-enabled": False,
    "rpc-enabled": False,
    "bind-address-ipv4": LOOPBACK,
    "bind-address-ipv6": "::1",
    "peer-port-random-on-start": False,
    "rename-partial-files": False,
    "start-added-torrents": True,
    "watch-dir-enabled": False,
    "incomplete-dir-enabled": False,
    "speed-limit-up-enabled": False,
    "speed-limit-down-enabled": False,
    "ratio-limit-enabled": False,
    "idle-seeding-limit-enabled": False,
    "message-level": 2,
}


class Transmission(_Process):
    """``transmission-cli`` downloading (then seeding) one torrent or magnet.

    Transmission 3.00 drops peers on 127.x learned from trackers and PEX, so
    a Transmission leecher must be dialled: give the other side
    :attr:`address`. With complete data in ``out_dir`` it verifies and seeds.
    """

    name = "transmission-cli"

    def __init__(
        self,
        target: str | Path,
        out_dir: Path,
        workdir: Path,
        *,
        settings: dict[str, Any] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "transmission.log")
        self.exe = require_tool("transmission-cli")
        self.target = str(target)
        self.out_dir = out_dir
        self.config_dir = workdir / "config"
        self.port = free_port()
        self.settings = {**TRANSMISSION_SETTINGS, **(settings or {})}

    @property
    def address(self) -> PeerAddr:
        return PeerAddr(LOOPBACK, self.port)

    async def __aenter__(self) -> Transmission:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            **self.settings,
            "peer-port": self.port,
            "download-dir": str(self.out_dir),
        }
        (self.config_dir / "settings.json").write_text(json.dumps(settings))
        await self._spawn(
            self.exe,
            "-g",
            str(self.config_dir),
            "-p",
            str(self.port),
            "-w",
            str(self.out_dir),
            self.target,
            cwd=self.config_dir,
        )
        return self

    def seeding(self) -> bool:
        """The status line says it is seeding (complete and verified)."""
        return "Seeding" in self.log_text()

    async def wait_listening(self, timeout_s: float = 10.0) -> None:
        """Until its peer port accepts connections."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise AssertionError(f"transmission-cli exited:\n{self.log_text()}")
            try:
                _, writer = await asyncio.open_connection(LOOPBACK, self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("transmission-cli never listened") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


class OpenTracker(_Process):
    """``opentracker`` on 127.0.0.1 (TCP and UDP, one port), whitelist mode.

    Debian's build serves only the info hashes in its whitelist file (``-w``)
    and answers others "Requested download is not authorized".
    """

    name = "opentracker"

    def __init__(self, workdir: Path, info_hashes: Sequence[bytes]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "opentracker.log")
        self.exe = require_tool("opentracker")
        self.workdir = workdir
        self.info_hashes = tuple(info_hashes)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://{LOOPBACK}:{self.port}/announce"

    async def __aenter__(self) -> OpenTracker:
        whitelist = self.workdir / "whitelist"
        whitelist.write_text("".join(ih.hex() + "\n" for ih in self.info_hashes))
        args = [self.exe, "-i", LOOPBACK, "-p", str(self.port)]
        args += ["-P", str(self.port)]
        if os.geteuid() == 0:
            # As root it chroots into -d and drops to -u; the whitelist path
            # is then resolved inside the chroot, so it is given relative.
            args += ["-d", str(self.workdir), "-u", "nobody"]
        await self._spawn(*args, "-w", whitelist.name, cwd=self.workdir)
        await self._wait_listening()
        return self

    async def _wait_listening(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise AssertionError(f"opentracker exited:\n{self.log_text()}")
            try:
                _, writer = await asyncio.open_connection(LOOPBACK, self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("opentracker never listened") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


# --- libtorrent ---------------------------------------------------------------


def libtorrent_settings(
    lt: ModuleType,
    *,
    dht_bootstrap: PeerAddr | None = None,
    encryption: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A settings_pack for loopback only (given whole to the session's
    constructor, so libtorrent's defaults, which join the public DHT, never
    apply).

    Args:
        dht_bootstrap: run the DHT, joined only through this node; else off.
        encryption: ``"forced"`` (MSE/PE required both ways, RC4 only),
            ``"disabled"``, or None for libtorrent's default (enabled).
    """
    settings: dict[str, Any] = {
        "listen_interfaces": f"{LOOPBACK}:0",
        "outgoing_interfaces": "",
        "enable_dht": dht_bootstrap is not None,
        "dht_bootstrap_nodes": str(dht_bootstrap) if dht_bootstrap else "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": (
            lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.tracker_notification
            | lt.alert.category_t.dht_notification
            | lt.alert.category_t.peer_notification
            | lt.alert.category_t.connect_notification
        ),
        "peer_connect_timeout": 3,
        "min_reconnect_time": 1,
        "tracker_completion_timeout": 5,
        "tracker_receive_timeout": 5,
        "stop_tracker_timeout": 1,
        "min_announce_interval": 1,
        "auto_manage_startup": 1,
        "torrent_connect_boost": 10,
        "connection_speed": 50,
        "close_redundant_connections": False,
        "announce_to_all_trackers": True,
        # Its SSRF mitigation only lets a tracker on localhost be asked for
        # a path ending in /announce: every scrape would fail "blocked by
        # SSRF mitigation" without a request.
        "ssrf_mitigation": False,
    }
    if encryption == "forced":
        settings["out_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["in_enc_policy"] = int(lt.enc_policy.pe_forced)
        settings["allowed_enc_level"] = int(lt.enc_level.pe_rc4)
        settings["prefer_rc4"] = True
    elif encryption == "disabled":
        settings["out_enc_policy"] = int(lt.enc_policy.pe_disabled)
        settings["in_enc_policy"] = int(lt.enc_policy.pe_disabled)
    settings.update(overrides)
    return settings


# Alert attributes worth keeping (each read only when the alert has it).
_ALERT_FIELDS = ("piece_index", "block_index", "num_peers", "complete", "incomplete")


@dataclass(frozen=True, slots=True, kw_only=True)
class LtAlert:
    """A snapshot of one libtorrent alert."""

    kind: str
    message: str
    fields: dict[str, Any]

    @classmethod
    def of(cls, alert: Any) -> LtAlert:
        fields = {k: getattr(alert, k) for k in _ALERT_FIELDS if hasattr(alert, k)}
        if hasattr(alert, "tracker_url"):
            fields["url"] = alert.tracker_url()
        return cls(kind=type(alert).__name__, message=alert.message(), fields=fields)


class Libtorrent:
    """An in-process libtorrent session on 127.0.0.1.

    libtorrent runs its own network threads; :meth:`poll` drains its alerts
    into :attr:`alerts`, and the ``wait_*`` helpers poll status under a
    timeout from the event loop.
    """

    def __init__(
        self,
        *,
        dht_bootstrap: PeerAddr | None = None,
        encryption: str | None = None,
        alert_mask: int | None = None,
        **settings: Any,
    ) -> None:
        self.lt = require_libtorrent()
        pack = libtorrent_settings(
            self.lt, dht_bootstrap=dht_bootstrap, encryption=encryption, **settings
        )
        if alert_mask is not None:
            pack["alert_mask"] = alert_mask
        self.session: Any = self.lt.session(pack)
        self._port = int(self.session.listen_port())
        self.alerts: list[LtAlert] = []
        self.handles: list[Any] = []

    @property
    def port(self) -> int:
        """The listen port (TCP, and UDP for its DHT); kept after close."""
        return self._port

    @property
    def address(self) -> PeerAddr:
        return PeerAddr(LOOPBACK, self.port)

    def poll(self) -> None:
        # An alert object is only valid until the next pop_alerts(): keep
        # plain snapshots.
        if self.session is not None:
            self.alerts.extend(LtAlert.of(a) for a in self.session.pop_alerts())

    def alerts_of(self, kind: str) -> list[LtAlert]:
        self.poll()
        return [a for a in self.alerts if a.kind == kind]

    def add(
        self,
        source: bytes | str | Any,
        save_path: Path,
        *,
        peers: Sequence[PeerAddr] = (),
        trackers: Sequence[str] | None = None,
        seed_mode: bool = False,
        extra_flags: int = 0,
    ) -> Any:
        """Add a torrent (bencoded bytes, a ``torrent_info``, or a magnet URI)
        started at once (not paused, not auto-managed), and dial ``peers``."""
        lt = self.lt
        if isinstance(source, str):
            params = lt.parse_magnet_uri(source)
        else:
            params = lt.add_torrent_params()
            if isinstance(source, bytes):
                params.ti = lt.torrent_info(lt.bdecode(source))
            else:
                params.ti = source
        params.save_path = str(save_path)
        if trackers is not None:
            params.trackers = list(trackers)
        flags = params.flags
        flags &= ~lt.torrent_flags.paused
        flags &= ~lt.torrent_flags.auto_managed
        flags &= ~lt.torrent_flags.duplicate_is_error
        if seed_mode:
            flags |= lt.torrent_flags.seed_mode
        params.flags = flags | extra_flags
        handle = self.session.add_torrent(params)
        for peer in peers:
            handle.connect_peer((peer.host, peer.port))
        self.handles.append(handle)
        return handle

    def connect(self, handle: Any, peer: PeerAddr) -> None:
        handle.connect_peer((peer.host, peer.port))

    async def wait(
        self, pred: Callable[[], bool], what: str, timeout_s: float = 30.0
    ) -> None:
        await wait_until(pred, timeout_s, f"libtorrent: {what}", poll=self.poll)

    async def wait_seeding(self, handle: Any, timeout_s: float = 30.0) -> None:
        """Until ``handle`` has every piece (downloaded or checked)."""

        def done() -> bool:
            st = handle.status()
            return bool(st.is_seeding) and st.state == self.lt.torrent_status.seeding

        try:
            await self.wait(done, "torrent complete", timeout_s)
        except AssertionError:
            st = handle.status()
            errors = [a.message for a in self.alerts if "error" in a.kind]
            raise AssertionError(
                f"libtorrent torrent not complete: state={st.state} "
                f"progress={st.progress:.3f} peers={st.num_peers} "
                f"error={st.errc.message() if st.errc.value() else ''} "
                f"errors={errors[-5:]}"
            ) from None

    def peer_addrs(self, handle: Any) -> dict[PeerAddr, Any]:
        """Connected peers of ``handle`` by address."""
        return {PeerAddr(str(p.ip[0]), int(p.ip[1])): p for p in handle.get_peer_info()}

    def close(self) -> None:
        if self.session is None:
            return
        for handle in self.handles:
            with contextlib.suppress(RuntimeError):
                self.session.remove_torrent(handle)
        self.handles.clear()
        self.poll()
        # Dropping the session object stops its threads (synchronously).
        self.session.pause()
        self.session = None

    async def __aenter__(self) -> Libtorrent:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)


def lt_info_hash(lt: ModuleType, torrent: bytes) -> bytes:
    """The v1 infohash libtorrent computes for a .torrent."""
    ti = lt.torrent_info(lt.bdecode(torrent))
    return bytes(ti.info_hashes().v1.to_bytes())


# --- torrent makers and readers -----------------------------------------------

_HASH_LINE = re.compile(
    r"^\s*(?:Hash|Info Hash|Hash v1)\s*:\s*([0-9a-fA-F]{40})\s*$", re.M
)


async def transmission_show_hash(torrent: Path) -> bytes:
    """The infohash ``transmission-show`` reports."""
    out = await run_tool(require_tool("transmission-show"), str(torrent))
    found = _HASH_LINE.search(out)
    if found is None:
        raise AssertionError(f"transmission-show printed no hash:\n{out}")
    return bytes.fromhex(found.group(1))


async def transmission_scrape(torrent: Path) -> tuple[int, int]:
    """``transmission-show -s``: Transmission's own scrape of the torrent's
    trackers; (seeders, leechers) as it prints them.

    transmission-cli scrapes on its own only 0..180 s after start, too late
    for a test; this is the same libtransmission scrape code on demand.
    """
    out = await run_tool(require_tool("transmission-show"), "-s", str(torrent))
    found = re.search(r"(\d+) seeders?, (\d+) leechers?", out)
    if found is None:
        raise AssertionError(f"transmission-show -s got no answer:\n{out}")
    return int(found.group(1)), int(found.group(2))


async def aria2_show_hash(torrent: Path) -> bytes:
    """The infohash ``aria2c -S`` (show files) reports."""
    out = await run_tool(require_tool("aria2c"), "--no-conf=true", "-S", str(torrent))
    found = _HASH_LINE.search(out)
    if found is None:
        raise AssertionError(f"aria2c -S printed no info hash:\n{out}")
    return bytes.fromhex(found.group(1))
