"""TEST DOUBLE: a phone's adbd for the tests, never a device edgebench supports.

There is no adbd for Linux hosts in Debian or on PyPI, so the tests serve the real Debian
`adb` client and server with this one: the device side of the adb protocol over TCP on
127.0.0.1 (CNXN without AUTH, OPEN/OKAY/WRTE/CLSE streams, `shell:` v1 and `shell,v2`
with exit codes, `exec:`, and the sync service's STAT/STA2/LST2/SEND/RECV/QUIT), which
is what `adb connect`, `push`, `pull` and `shell` use.

Commands run as root in a chroot of the phone's folder, `ROOT`, inside this process's own
mount namespace (start it under `unshare -m`): the host's /bin, /usr, /lib*, /etc, /dev and
/proc are bind-mounted in, so host tools stand in for the phone's toolbox, and pushed
static aarch64 binaries run under qemu-user-static through binfmt_misc. The phone's state
is fixture files in ROOT (see tests/support/phone.py): getprop and dumpsys are scripts in
ROOT/system/bin reading them, sysfs is plain files under ROOT/sys.

While a pushed program (under /data/local/tmp) computes, the fixture battery's current_now
reads `busy_current` instead of `idle_current` (from ROOT/phone.json), the stand-in for
the draw of a phone computing: "computes" is its process tree using CPU (the scheduler's
per-thread counts, polled every POLL_S), so a device runner waiting for its next request
draws the idle current. Every change is appended to ROOT/battery-trace as "WALL_NS
CURRENT", the trace whose integral the energy figures are checked against.

    unshare -m python -m tests.support.adbd_double ROOT PORT [unauthorized|offline]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (
    int.from_bytes(name, "little") for name in (b"CNXN", b"OPEN", b"OKAY", b"CLSE", b"WRTE", b"AUTH")
)
VERSION, MAX_DATA = 0x01000001, 256 * 1024
AUTH_SIGNATURE = 2
FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir"
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4
HOST_BINDS = ("bin", "sbin", "usr", "lib", "lib64", "etc", "dev", "proc")
DEVICE_PROGRAMS = "/data/local/tmp/"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
POLL_S = 0.02
BUSY_SHARE = 0.2  # of one core, over the last poll: computing; below it over IDLE_POLLS polls: idle
IDLE_POLLS = 4


def tree_cpu_ns(pid: int) -> int:
    """CPU time so far of `pid`, its threads and its descendants (0 once it has gone)."""
    total, tasks = 0, Path(f"/proc/{pid}/task")
    try:
        for task in tasks.iterdir():
            total += int((task / "schedstat").read_text().split()[0])
            for child in (task / "children").read_text().split():
                total += tree_cpu_ns(int(child))
    except (OSError, ValueError, IndexError):
        pass
    return total


def mount_userland(root: Path) -> None:
    """Bind the host's toolbox into the phone's folder (this namespace only)."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    for name in HOST_BINDS:
        if Path("/", name).exists() and not Path("/", name).is_symlink():
            (root / name).mkdir(exist_ok=True)
            subprocess.run(["mount", "--rbind", f"/{name}", str(root / name)], check=True)
        elif Path("/", name).is_symlink() and not (root / name).is_symlink():
            (root / name).symlink_to(os.readlink(f"/{name}"))


def packet(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


class Stream:
    """One adb stream: a service with its local id, the host's id, and write credit."""

    def __init__(self, conn: "Connection", local: int, remote: int) -> None:
        self.conn, self.local, self.remote = conn, local, remote
        self.ready = asyncio.Event()
        self.ready.set()
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_DATA):
            await self.ready.wait()
            if self.closed:
                return
            self.ready.clear()
            self.conn.send(A_WRTE, self.local, self.remote, data[start : start + MAX_DATA])

    async def read(self) -> bytes | None:
        return await self.inbox.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ready.set()
            self.conn.send(A_CLSE, self.local, self.remote)
            self.conn.streams.pop(self.local, None)


class Connection:
    def __init__(self, phone: "Phone", reader, writer) -> None:
        self.phone, self.reader, self.writer = phone, reader, writer
        self.streams: dict[int, Stream] = {}
        self.next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(packet(command, arg0, arg1, data))

    async def serve(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(24)
                command, arg0, arg1, length, _, _ = struct.unpack("<6I", header)
                data = await self.reader.readexactly(length) if length else b""
                self.dispatch(command, arg0, arg1, data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.closed = True
                stream.ready.set()
                stream.inbox.put_nowait(None)
            self.writer.close()

    def dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            if self.phone.mode == "offline":  # a phone that never completes the handshake
                return
            if self.phone.mode == "unauthorized":  # a phone that has not accepted this host's key
                self.send(A_AUTH, 1, 0, os.urandom(20))
                return
            banner = f"device::ro.product.name={self.phone.prop('ro.product.name')};"
            banner += f"ro.product.model={self.phone.prop('ro.product.model')};features={FEATURES}"
            self.send(A_CNXN, VERSION, MAX_DATA, banner.encode())
        elif command == A_AUTH and arg0 == AUTH_SIGNATURE:
            self.send(A_AUTH, 1, 0, os.urandom(20))  # every signature refused; the public key then
            # offered waits for a tap on the phone's screen that never comes: unauthorized
        elif command == A_OPEN:
            local, self.next_id = self.next_id, self.next_id + 1
            stream = Stream(self, local, arg0)
            self.streams[local] = stream
            self.send(A_OKAY, local, arg0)
            asyncio.ensure_future(self.phone.service(stream, data.rstrip(b"\0").decode()))
        elif command == A_WRTE and arg1 in self.streams:
            self.streams[arg1].inbox.put_nowait(data)
            self.send(A_OKAY, arg1, arg0)
        elif command == A_OKAY and arg1 in self.streams:
            self.streams[arg1].ready.set()
        elif command == A_CLSE and arg1 in self.streams:
            stream = self.streams.pop(arg1)
            stream.closed = True
            stream.ready.set()
            stream.inbox.put_nowait(None)


class Phone:
    def __init__(self, root: Path, mode: str) -> None:
        self.root, self.mode = root, mode
        self.config = json.loads((root / "phone.json").read_text())
        self.programs: set[int] = set()  # pids of the pushed programs running
        self.busy, self.current = False, None
        self.set_current()

    def prop(self, name: str) -> str:
        return self.config["props"].get(name, "")

    def set_current(self) -> None:
        """The battery's current_now fixture: the busy draw while a pushed program computes."""
        battery = self.config.get("battery_sysfs")
        if battery and "idle_current" in self.config:
            value = self.config["busy_current" if self.busy else "idle_current"]
            if value != self.current:
                (self.root / battery / "current_now").write_text(f"{value}\n")
                with (self.root / "battery-trace").open("a") as trace:
                    trace.write(f"{time.time_ns()} {value}\n")
                self.current = value

    async def watch_programs(self) -> None:
        """Busy while the pushed programs' processes use CPU, idle once they stop."""
        last, quiet = 0, 0
        while True:
            await asyncio.sleep(POLL_S)
            used = sum(tree_cpu_ns(pid) for pid in self.programs)
            computing = self.programs and used - last >= BUSY_SHARE * POLL_S * 1e9
            last, quiet = used, 0 if computing else quiet + 1
            if computing != self.busy and (computing or quiet >= IDLE_POLLS):
                self.busy = bool(computing)
                self.set_current()

    def path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    async def service(self, stream: Stream, name: str) -> None:
        try:
            if name.startswith("shell"):
                options, _, command = name.partition(":")
                await self.shell(stream, command, v2="v2" in options.split(","))
            elif name.startswith("exec:"):
                await self.shell(stream, name.removeprefix("exec:"), v2=False)
            elif name == "sync:":
                await self.sync(stream)
        finally:
            stream.close()

    async def shell(self, stream: Stream, command: str, v2: bool) -> None:
        busy = DEVICE_PROGRAMS in command
        env = {"PATH": "/system/bin:/bin:/usr/bin", "HOME": "/data/local/tmp", "TMPDIR": "/data/local/tmp"}
        proc = await asyncio.create_subprocess_exec(
            CHROOT,
            str(self.root),
            "/bin/sh",
            "-c",
            command or "true",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE if v2 else asyncio.subprocess.STDOUT,
            env=env,
        )
        if busy:
            self.programs.add(proc.pid)

        async def pump(source, kind: int) -> None:
            while chunk := await source.read(65536):
                await stream.write(struct.pack("<BI", kind, len(chunk)) + chunk if v2 else chunk)

        async def feed() -> None:
            buffer = b""
            while (data := await stream.read()) is not None:
                if not v2:
                    proc.stdin.write(data)
                    continue
                buffer += data
                while len(buffer) >= 5:
                    kind, length = struct.unpack("<BI", buffer[:5])
                    if len(buffer) < 5 + length:
                        break
                    payload, buffer = buffer[5 : 5 + length], buffer[5 + length :]
                    if kind == SHELL_STDIN:
                        proc.stdin.write(payload)
                    elif kind == SHELL_CLOSE_STDIN:
                        proc.stdin.close()
            if proc.returncode is None:  # the host went away: so does the command
                proc.kill()

        feeder = asyncio.ensure_future(feed())
        pumps = [pump(proc.stdout, SHELL_STDOUT)] + ([pump(proc.stderr, SHELL_STDERR)] if v2 else [])
        try:
            await asyncio.gather(*pumps)
            code = await proc.wait()
        finally:
            feeder.cancel()
            if busy:
                self.programs.discard(proc.pid)
        if v2:
            await stream.write(struct.pack("<BIB", SHELL_EXIT, 1, code & 0xFF))

    async def sync(self, stream: Stream) -> None:
        buffer = bytearray()

        async def take(n: int) -> bytes | None:
            while len(buffer) < n:
                data = await stream.read()
                if data is None:
                    return None
                buffer.extend(data)
            out = bytes(buffer[:n])
            del buffer[:n]
            return out

        while (header := await take(8)) is not None:
            request, length = header[:4], struct.unpack("<I", header[4:])[0]
            argument = (await take(length) or b"").decode()
            if request == b"QUIT":
                return
            if request in (b"STAT", b"STA2", b"LST2"):
                await stream.write(self.stat(request, argument))
            elif request == b"SEND":
                await self.receive_file(stream, take, argument)
            elif request == b"RECV":
                await self.send_file(stream, argument)
            else:
                await fail(stream, f"unsupported sync request {request!r}")
                return

    def stat(self, request: bytes, device_path: str) -> bytes:
        try:
            st = os.stat(self.path(device_path))
        except OSError as exc:
            if request == b"STAT":
                return b"STAT" + struct.pack("<3I", 0, 0, 0)
            return request + struct.pack("<I", exc.errno) + bytes(64)
        if request == b"STAT":
            return b"STAT" + struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
        return request + struct.pack(
            "<IQQIIIIQqqq",
            0,
            st.st_dev,
            st.st_ino,
            st.st_mode,
            st.st_nlink,
            st.st_uid,
            st.st_gid,
            st.st_size,
            int(st.st_atime),
            int(st.st_mtime),
            int(st.st_ctime),
        )

    async def receive_file(self, stream: Stream, take, argument: str) -> None:
        device_path, _, mode = argument.rpartition(",")
        target = self.path(device_path)
        chunks = []
        while (header := await take(8)) is not None:
            kind, length = header[:4], struct.unpack("<I", header[4:])[0]
            if kind == b"DONE":
                break
            chunks.append(await take(length))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"".join(chunks))
        target.chmod(int(mode) & 0o7777)
        await stream.write(b"OKAY" + struct.pack("<I", 0))

    async def send_file(self, stream: Stream, device_path: str) -> None:
        try:
            data = self.path(device_path).read_bytes()
        except OSError as exc:
            await fail(stream, exc.strerror or "cannot read")
            return
        for start in range(0, len(data), 64 * 1024):
            chunk = data[start : start + 64 * 1024]
            await stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        await stream.write(b"DONE" + struct.pack("<I", 0))


async def fail(stream: Stream, message: str) -> None:
    await stream.write(b"FAIL" + struct.pack("<I", len(message)) + message.encode())


async def serve(root: Path, port: int, mode: str) -> None:
    phone = Phone(root, mode)
    asyncio.ensure_future(phone.watch_programs())
    server = await asyncio.start_server(lambda r, w: Connection(phone, r, w).serve(), "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    root, port = Path(sys.argv[1]).resolve(), int(sys.argv[2])
    mount_userland(root)
    asyncio.run(serve(root, port, sys.argv[3] if len(sys.argv) > 3 else "device"))


if __name__ == "__main__":
    main()
