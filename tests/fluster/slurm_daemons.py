"""A throwaway Slurm cluster on this machine: munged, slurmctld and two slurmd, started by hand.

Used by the Slurm tests' session fixture and by benchmark case 5. No
configuration in ``/etc`` is used or changed: the config, keys, sockets, spool
and state all live in one temporary directory, on ports found free, so several
runs can share a machine. Every daemon is stopped by its pid, never by name.

Runs as root (``SlurmUser=root``, as a test cluster may); the key and socket
directory of ``munged`` belong to the ``munge`` user, which it runs as.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

#: The Slurm programs the cluster and the launcher need.
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
NODES = ("n1", "n2")
PARTITION = "debug"
#: Bound on starting the whole cluster (daemons up, both nodes idle).
START_TIMEOUT = 60.0

_CONFIG = """\
ClusterName=ctt
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
KillWait=2
MinJobAge=300
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
MessageTimeout=5
{nodes}
PartitionName={partition} Nodes={node_list} Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> str | None:
    """Return why the cluster cannot start here (Slurm missing, not root), or None if it can."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"Slurm is not installed (no {', '.join(missing)} on PATH): "
            "apt-get install slurmctld slurmd slurm-client munge, as .ci/run does"
        )
    if os.geteuid() != 0:
        return "the throwaway Slurm cluster runs its daemons as root"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SlurmCluster:
    """Start munged, slurmctld and one slurmd per node (one CPU each) under ``root``.

    ``conf`` is the cluster's ``slurm.conf``: give it to ``SlurmLauncher(slurm_conf=)``.
    ``stop()`` (or leaving the ``with`` block) ends everything.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ctt-slurm-"))
        self.conf = self.root / "slurm.conf"
        self._env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._daemons: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start every daemon and wait (bounded) until all nodes are idle."""
        deadline = time.monotonic() + START_TIMEOUT
        self.root.chmod(0o755)  # munged, as user munge, must reach its directory
        # munged insists: its key private to it, its socket's directory open to all.
        munge_dir = self.root / "munge"
        munge_dir.mkdir(mode=0o700)
        run_dir = self.root / "munge-run"
        run_dir.mkdir()
        run_dir.chmod(0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        munge = pwd.getpwnam("munge")
        for path in (munge_dir, run_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        munge_socket = run_dir / "munge.socket"
        for sub in ("state", "spool", *(f"spool/{name}" for name in NODES)):
            (self.root / sub).mkdir()
        ports = _free_ports(1 + len(NODES))
        nodes = "\n".join(
            f"NodeName={name} NodeAddr=127.0.0.1 Port={port} CPUs=1 State=UNKNOWN"
            for name, port in zip(NODES, ports[1:])
        )
        self.conf.write_text(
            _CONFIG.format(
                host=socket.gethostname().split(".")[0],
                ctld_port=ports[0],
                munge_socket=munge_socket,
                root=self.root,
                nodes=nodes,
                partition=PARTITION,
                node_list=",".join(NODES),
            )
        )
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--key-file={key}",
                f"--socket={munge_socket}",
                f"--pid-file={run_dir / 'munged.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            user="munge",
        )
        self._wait_for(lambda: munge_socket.exists(), deadline, "munged's socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        for name in NODES:
            self._spawn(f"slurmd {name}", ["slurmd", "-D", "-N", name, "-f", str(self.conf)])
        self._wait_for(self._nodes_idle, deadline, f"nodes {', '.join(NODES)} to be idle")

    def _spawn(self, name: str, argv: Sequence[str], user: str | None = None) -> None:
        with open(self.root / f"{name.replace(' ', '-')}.out", "wb") as log:
            process = subprocess.Popen(
                list(argv),
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
            )
        self._daemons.append((name, process))

    def _wait_for(self, check: Callable[[], bool], deadline: float, what: str) -> None:
        delay = 0.05
        while not check():
            for name, process in self._daemons:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with code {process.returncode} while waiting for "
                        f"{what}\n{self._logs()}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}\n{self._logs()}")
            time.sleep(delay)  # polling a daemon's state: there is nothing to wait on
            delay = min(delay * 2, 0.5)

    def _logs(self, lines: int = 15) -> str:
        # The directory goes with stop(): a failure carries the logs' last lines.
        parts = []
        for path in sorted([*self.root.glob("*.out"), *self.root.glob("*.log")]):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _nodes_idle(self) -> bool:
        states = self.node_states()
        return all(states.get(name) == "idle" for name in NODES)

    def node_states(self) -> dict[str, str]:
        """Return ``{node: state}`` as ``sinfo`` reports it now (empty if it cannot answer)."""
        result = self.run("sinfo", "--noheader", "--Node", "--format=%N %t", check=False)
        states = {}
        for line in result.stdout.splitlines():
            name, _, state = line.partition(" ")
            states[name] = state.strip()
        return states

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster; return its completed process."""
        return subprocess.run(
            list(argv), env=self._env, capture_output=True, text=True, timeout=30, check=check
        )

    def queue(self) -> list[str]:
        """Return the ids of the jobs ``squeue`` lists (pending, running or completing)."""
        out = self.run("squeue", "--noheader", "--format=%i").stdout
        return out.split()

    def stop(self) -> None:
        """Cancel any job left, stop every daemon by pid, then end stray job processes.

        Daemons get TERM, then KILL after a grace, the newest first. Job
        processes (slurmstepd and what it ran) outlive slurmd, so any left are
        found by the config path in their environment and killed by pid.
        """
        if self._daemons and self._daemons[0][1].poll() is None:
            self._cancel_all()
        while self._daemons:
            _, process = self._daemons.pop()
            _end(process)
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def _cancel_all(self) -> None:
        try:
            jobs = self.queue()
            if jobs:
                self.run("scancel", *jobs, check=False)
                self._wait_for(lambda: not self.queue(), time.monotonic() + 30, "jobs to end")
        except (OSError, subprocess.SubprocessError, RuntimeError, TimeoutError):
            pass  # the strays sweep below still ends their processes

    def _strays(self) -> list[int]:
        marker = f"SLURM_CONF={self.conf}".encode()
        strays = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        strays.append(int(entry))
            except OSError:
                continue
        return strays


def _end(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
