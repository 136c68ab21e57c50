"""SlurmLauncher: run each Fluster job as a Slurm batch job, through Slurm's command-line tools.

``launch()`` hands ``sbatch`` a short script on stdin that ``exec``\\ s the
worker command, and returns at once: a queued job is a pending worker. The
job's environment, the cluster secret included, travels in ``sbatch``'s own
process environment, with ``--export`` naming the variables: never in argv,
the script, or a file of ours. One poller thread per launcher asks ``squeue``
about all of its jobs in one call every few seconds; the handles answer
``poll()`` and ``wait()`` from what it saw.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
from typing import Mapping, Sequence

from ._context import ENV_ADVERTISE_HOST
from ._launcher import JobHandle, worker_pythonpath

__all__ = ("SlurmError", "SlurmJob", "SlurmLauncher")

logger = logging.getLogger("contextthreads.fluster.slurm")

#: States in which a job has not ended yet (COMPLETING: ended, its node not yet released).
_LIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "STOPPED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "RESV_DEL_HOLD",
        "SIGNALING",
        "SPECIAL_EXIT",
        "STAGE_OUT",
    }
)
#: States in which Slurm will not signal a job yet.
_NOT_STARTED = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
#: Ended states in which the job ran to its own end: the exit status says how.
_EXITED = frozenset({"COMPLETED", "FAILED"})
#: Every other ended state (CANCELLED, NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, PREEMPTED,
#: BOOT_FAIL, DEADLINE, REVOKED) means the job was killed.

#: How often the poller asks while some job is being terminated.
_TERMINATING_INTERVAL = 0.25
#: Bound on each call of a Slurm command.
_COMMAND_TIMEOUT = 60.0

# Finds the node's address as Slurm knows it (NodeAddr) unless one was given:
# the worker advertises it to the pool, so it must be the address Slurm itself uses.
_SCRIPT = """\
#!/bin/sh
# Fluster worker job {job_id}, submitted by contextthreads.fluster.SlurmLauncher.
if [ -z "${{{advertise}:-}}" ]; then
    {advertise}=$(scontrol --oneliner show node "$SLURMD_NODENAME" \\
        | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')
    if [ -z "${advertise}" ]; then
        echo "fluster: cannot find the address of node $SLURMD_NODENAME" >&2
        exit 2
    fi
    export {advertise}
fi
exec {command}
"""


class SlurmError(RuntimeError):
    """Slurm is not installed, cannot be reached, or refused a request; the message says which."""


def _parse_status(text: str) -> tuple[int, int]:
    """Return ``(exit code, signal)`` from squeue's ``exit_code``: a raw wait status, or
    ``code:signal`` as sacct and newer Slurm spell it."""
    code, sep, signum = text.partition(":")
    if sep:
        return int(code or 0), int(signum or 0)
    status = int(text or 0)
    return (status >> 8) & 0xFF, status & 0x7F


def _exit_code(state: str, code: int, signum: int) -> int:
    """Map an ended job's Slurm state, exit code and signal to a ``Popen``-style exit code.

    Jobs that exited report their code (minus the signal that ended them);
    killed ones minus the signal, SIGKILL when Slurm names none.
    """
    if state in _EXITED:
        if signum:
            return -signum
        # A FAILED job (a launch failure, say) never reads as a success.
        return code if code or state == "COMPLETED" else 1
    return -(signum or signal.SIGKILL)


class SlurmJob:
    """A Fluster job running as a Slurm batch job. Thread-safe; state from the launcher's poller.

    ``pid`` is None: the process runs on a compute node. ``slurm_job_id``,
    ``state``, ``reason`` and ``node`` are what Slurm last said.
    """

    def __init__(self, launcher: SlurmLauncher, job_id: str, slurm_job_id: str) -> None:
        self._launcher = launcher
        self.job_id = job_id
        self.slurm_job_id = slurm_job_id
        self.state = "PENDING"
        self.reason = ""
        self.node: str | None = None
        self._returncode: int | None = None
        self._terminating = False

    def __repr__(self) -> str:
        return (
            f"SlurmJob(job_id={self.job_id!r}, slurm_job_id={self.slurm_job_id!r}, "
            f"state={self.state!r}, node={self.node!r})"
        )

    @property
    def pid(self) -> int | None:
        """Return None: the job's process lives on a compute node, not here."""
        return None

    def poll(self) -> int | None:
        """Return the exit code if Slurm reported the job ended, else None."""
        with self._launcher._changed:
            return self._returncode

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the job to end; return its exit code or None."""
        with self._launcher._changed:
            self._launcher._changed.wait_for(lambda: self._returncode is not None, timeout)
            return self._returncode

    def terminate(self, grace: float) -> None:
        """Stop the job: SIGTERM, then SIGKILL after ``grace`` seconds. Return once it ended.

        A job not started yet is cancelled outright. Bounded: returns within a
        few times ``grace`` even if Slurm has not reported the end by then.
        """
        with self._launcher._changed:
            if self._returncode is not None:
                return
            self._terminating = True  # the poller looks more often meanwhile
            self._launcher._changed.notify_all()
        self._signal("TERM", grace)
        if self.wait(grace) is None:
            self._signal("KILL", grace)
            if self.wait(grace) is None:
                logger.warning("Slurm job %s did not end after SIGKILL", self.slurm_job_id)
        with self._launcher._changed:
            self._terminating = False

    def _signal(self, signal_name: str, timeout: float) -> None:
        with self._launcher._changed:
            started = self.state not in _NOT_STARTED
        # Slurm will not signal a job that has not started (scancel retries until it times
        # out); a plain scancel removes it, or TERMs it, then KILLs it, if it just started.
        if not started or not self._launcher._scancel(self.slurm_job_id, signal_name, timeout):
            self._launcher._scancel(self.slurm_job_id, None, timeout)

    def _update(self, state: str, status: tuple[int, int], reason: str, node: str) -> None:
        # Called by the poller, under the launcher's lock.
        if state != self.state:
            logger.debug("Slurm job %s (%s): %s", self.slurm_job_id, self.job_id, state)
        self.state, self.reason, self.node = state, reason, node or self.node
        if state not in _LIVE:
            self._returncode = _exit_code(state, *status)

    def _vanish(self) -> None:
        # Slurm forgot the job (it ended more than MinJobAge ago, or was purged).
        logger.warning("Slurm job %s (%s) is no longer known", self.slurm_job_id, self.job_id)
        self.state = "UNKNOWN"
        self._returncode = -signal.SIGKILL


class SlurmLauncher:
    """Launch each Fluster job as a Slurm batch job; a ``JobLauncher`` for ``LocalCluster``.

    Resource options map to ``sbatch``'s: ``partition``, ``cpus_per_task``,
    ``mem`` (``"4G"``), ``gres`` (``"gpu:1"``), ``constraint``,
    ``time_limit`` (``"1:00:00"``), and ``sbatch_args`` added as given.
    ``output`` is the job's stdout and stderr file (``sbatch --output``,
    Slurm's ``slurm-%j.out`` in the working directory by default),
    ``workdir`` its working directory. The job sees only the variables of
    the Fluster job, ``PYTHONPATH`` (this process's ``sys.path``, for code
    pickled by reference on a shared filesystem) and those named in
    ``export``, taken from this process's environment. ``slurm_conf``
    selects the cluster (``SLURM_CONF``) for every Slurm command run.

    One poller thread asks ``squeue`` about all live jobs every
    ``poll_interval`` seconds (faster while one is being terminated), and
    stops while there are none. Thread-safe.

    Raises ``SlurmError`` at once if Slurm's commands are not on ``PATH``.
    """

    def __init__(
        self,
        *,
        partition: str | None = None,
        cpus_per_task: int | None = None,
        mem: str | None = None,
        gres: str | None = None,
        constraint: str | None = None,
        time_limit: str | None = None,
        sbatch_args: Sequence[str] = (),
        output: str | None = None,
        workdir: str | None = None,
        export: Sequence[str] = ("PATH", "HOME", "LANG"),
        slurm_conf: str | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        if isinstance(sbatch_args, str) or isinstance(export, str):
            raise TypeError("sbatch_args and export must be sequences of str, not a str")
        commands = {}
        for name in ("sbatch", "squeue", "scancel"):
            path = shutil.which(name)
            if path is None:
                raise SlurmError(
                    f"{name} not found on PATH: SlurmLauncher needs Slurm's client commands "
                    "(Debian: apt-get install slurm-client) and a reachable slurmctld"
                )
            commands[name] = path
        self._commands = commands
        options = {
            "partition": partition,
            "cpus-per-task": cpus_per_task,
            "mem": mem,
            "gres": gres,
            "constraint": constraint,
            "time": time_limit,
            "output": output,
            "chdir": workdir,
        }
        self._options = [
            f"--{name}={value}" for name, value in options.items() if value is not None
        ]
        self._options += list(sbatch_args)
        self._export = tuple(export)
        self._slurm_env = {"SLURM_CONF": slurm_conf} if slurm_conf else {}
        self._interval = float(poll_interval)
        self._changed = threading.Condition(threading.Lock())
        self._jobs: dict[str, SlurmJob] = {}
        self._poller: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SlurmLauncher(options={self._options!r}, jobs={len(self._jobs)})"

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        """Submit ``command`` as a batch job with ``env``; return its handle without waiting.

        Raises ``SlurmError`` with Slurm's message if ``sbatch`` refuses the
        job (an unknown partition, say) or cannot reach the controller.
        """
        script = _SCRIPT.format(
            job_id=job_id, advertise=ENV_ADVERTISE_HOST, command=shlex.join(command)
        )
        environ = self._environ()
        environ.update(env)
        names = sorted({*env, "PYTHONPATH", *self._export})
        argv = [
            self._commands["sbatch"],
            "--parsable",
            # A worker Slurm restarts would be a stranger to its pool, which retries on its own.
            "--no-requeue",
            f"--job-name={job_id}",
            f"--export={','.join(names)}",
            *self._options,
        ]
        result = self._run(argv, environ, script)
        if result.returncode != 0:
            raise SlurmError(
                f"sbatch refused job {job_id!r} (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        slurm_job_id = result.stdout.strip().split(";", 1)[0]
        if not slurm_job_id.isdigit():
            raise SlurmError(f"sbatch gave no job id for {job_id!r}: {result.stdout!r}")
        handle = SlurmJob(self, job_id, slurm_job_id)
        with self._changed:
            self._jobs[slurm_job_id] = handle
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll_loop, name="fluster-slurm-poller", daemon=True
                )
                self._poller.start()
        logger.debug("launched job %s as Slurm job %s", job_id, slurm_job_id)
        return handle

    # -- internals ------------------------------------------------------------

    def _environ(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": worker_pythonpath(), **self._slurm_env}

    def _run(
        self,
        argv: Sequence[str],
        environ: Mapping[str, str] | None = None,
        stdin: str = "",
        timeout: float = _COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        if environ is None:
            environ = {**os.environ, **self._slurm_env}
        try:
            return subprocess.run(
                list(argv),
                input=stdin,
                env=dict(environ),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(
                f"{os.path.basename(argv[0])} did not answer in {timeout:.0f}s: "
                "is slurmctld reachable?"
            ) from exc
        except OSError as exc:
            raise SlurmError(f"cannot run {argv[0]}: {exc}") from exc

    def _scancel(self, slurm_job_id: str, signal_name: str | None, timeout: float) -> bool:
        """Run scancel on one job (a signal, or cancel it); return False if it did not answer."""
        argv = [self._commands["scancel"]]
        if signal_name is not None:
            # --full: the batch shell is the worker (it exec'd), not only the steps.
            argv += ["--full", f"--signal={signal_name}"]
        try:
            result = self._run([*argv, slurm_job_id], timeout=max(timeout, 1.0))
        except SlurmError as exc:
            logger.warning("scancel of Slurm job %s: %s", slurm_job_id, exc)
            return False
        if result.returncode != 0:
            # Most often the job ended meanwhile; the poller will say so.
            logger.debug("scancel %s: %s", slurm_job_id, result.stderr.strip())
        return True

    def _poll_loop(self) -> None:
        while True:
            with self._changed:
                live = [job for job in self._jobs.values() if job._returncode is None]
                if not live:
                    self._poller = None
                    return
                fast = any(job._terminating for job in live)
            try:
                seen = self._query([job.slurm_job_id for job in live])
            except SlurmError as exc:
                logger.warning("cannot ask Slurm about jobs: %s (will retry)", exc)
                seen = None
            with self._changed:
                if seen is not None:
                    for job in live:
                        row = seen.get(job.slurm_job_id)
                        if row is None:
                            job._vanish()
                        else:
                            job._update(*row)
                    # Ended jobs need no more polling, and their handles hold the outcome.
                    for job in live:
                        if job._returncode is not None:
                            del self._jobs[job.slurm_job_id]
                self._changed.notify_all()
                self._changed.wait(_TERMINATING_INTERVAL if fast else self._interval)

    def _query(
        self, slurm_job_ids: Sequence[str]
    ) -> dict[str, tuple[str, tuple[int, int], str, str]]:
        """Return ``{slurm job id: (state, exit status, reason, node)}`` from one squeue call."""
        argv = [
            self._commands["squeue"],
            "--noheader",
            "--states=all",
            f"--jobs={','.join(slurm_job_ids)}",
            "--Format=JobID:|,State:|,exit_code:|,Reason:|,NodeList:|",
        ]
        result = self._run(argv)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return {}  # every one of them is gone
            raise SlurmError(f"squeue failed (exit {result.returncode}): {result.stderr.strip()}")
        rows = {}
        for line in result.stdout.splitlines():
            fields = line.split("|")
            if len(fields) < 5 or not fields[0]:
                continue
            job, state, status, reason, node = (field.strip() for field in fields[:5])
            # "CANCELLED by 0" is how squeue spells some states.
            state = state.split()[0] if state else "UNKNOWN"
            try:
                parsed = _parse_status(status)
            except ValueError:
                parsed = (0, 0)
            rows[job] = (state, parsed, reason, node)
        return rows
