"""A throwaway single-node SLURM for tests: slurmctld, slurmd, slurmdbd (accounting in a private
MariaDB) and munged, configured for a container (proctrack/linuxproc, task/none, no cgroups),
with every file, socket and port private to one temp folder. Used by tests/test_slurm.py.
"""

from __future__ import annotations

import ctypes
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 60  # each daemon's start-up
CMD_TIMEOUT_S = 30  # any single slurm/munge/mariadb client command
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "sacct", "sacctmgr", "sinfo", "squeue", "scancel", "mariadb", "mariadb-admin")
CLUSTER, ACCOUNT, PARTITION = "avfertest", "avfer", "debug"


def missing_tools() -> list[str]:
    """Executables the cluster needs that are not installed (see .ci/install-slurm.sh)."""
    return [t for t in DAEMONS + CLIENTS if shutil.which(t) is None]


def _die_with_parent() -> None:
    """In a daemon's child process: get SIGTERM when pytest dies, even when killed (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what: str, ok, timeout: float, why=lambda: "") -> None:
    """Poll ``ok()`` until it is true; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s\n{why()}")


class SlurmCluster:
    """slurmctld, slurmd, slurmdbd, MariaDB and munged for this host, all state in ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.conf = root / "etc" / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.ports = {k: _free_port() for k in ("db", "ctld", "slurmd", "dbd")}
        self.munge_socket = root / "munge" / "munge.socket"
        self.db_socket = root / "db" / "mysqld.sock"
        # The slurm-jobstep plugin strips every SLURM_* variable (SLURM_CONF too) before its
        # nested `srun`, so srun inside the jobs would look for /etc/slurm/slurm.conf: a wrapper
        # first in PATH restores SLURM_CONF for it.
        bindir = root / "bin"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=f"{bindir}:{os.environ['PATH']}")

    # -- helpers
    def run(
        self, *cmd: str, check: bool = True, timeout: float = CMD_TIMEOUT_S
    ) -> subprocess.CompletedProcess:
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def _ok(self, *cmd: str) -> bool:
        try:
            return self.run(*cmd, check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _spawn(self, name: str, *cmd: str) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.procs.append((name, proc))
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({proc.returncode}):\n{self.logs(name)}")
        return proc

    def logs(self, *names: str, lines: int = 30) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*.log")):  # *.out repeat them
            if not names or any(path.name.startswith(n) for n in names):
                out.append(
                    f"== {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                )
        return "\n".join(out)

    # -- start/stop
    def start(self) -> None:
        r = self.root
        for d in ("etc", "log", "bin", "munge", "spool/ctld", "spool/d"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o755)  # munged insists on a world-searchable socket folder
        (r / "bin" / "srun").write_text(
            f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n'
        )
        (r / "bin" / "srun").chmod(0o755)
        self._start_munge()
        self._start_mariadb()
        self._write_configs()
        self._spawn("slurmdbd", "slurmdbd", "-D")
        _wait_for(
            "slurmdbd",
            lambda: self._ok("sacctmgr", "-n", "list", "cluster"),
            START_TIMEOUT_S,
            lambda: self.logs("slurmdbd"),
        )
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self.run("sacctmgr", "-i", "add", "account", ACCOUNT, "Description=avfer tests", "Organization=avfer")
        self.run(
            "sacctmgr",
            "-i",
            "add",
            "user",
            getpass.getuser(),
            f"Account={ACCOUNT}",
            f"DefaultAccount={ACCOUNT}",
        )
        self._spawn("slurmctld", "slurmctld", "-D", "-i")
        self._spawn("slurmd", "slurmd", "-D", "-N", self.node)
        _wait_for(
            "the SLURM node",
            lambda: "idle" in self.run("sinfo", "-h", "-o", "%T", check=False).stdout,
            START_TIMEOUT_S,
            lambda: self.logs("slurmctld", "slurmd"),
        )

    def _start_munge(self) -> None:
        keydir = self.root / "munge" / "etc"
        keydir.mkdir(mode=0o700)
        key = keydir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        m = self.root / "munge"
        self._spawn(
            "munged",
            "munged",
            "-F",
            f"--key-file={key}",
            f"--socket={self.munge_socket}",
            f"--pid-file={m}/munged.pid",
            f"--seed-file={m}/munged.seed",
            f"--log-file={self.root}/log/munged.log",
        )
        _wait_for("munged", self.munge_socket.exists, START_TIMEOUT_S, lambda: self.logs("munged"))

    def _start_mariadb(self) -> None:
        db = self.root / "db"
        self.run(
            "mariadb-install-db",
            "--no-defaults",
            "--user=root",
            f"--datadir={db}/data",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            timeout=120,
        )
        self._spawn(
            "mariadbd",
            "mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={db}/data",
            f"--socket={self.db_socket}",
            f"--port={self.ports['db']}",
            "--bind-address=127.0.0.1",
            f"--pid-file={db}/mysqld.pid",
            f"--log-error={self.root}/log/mariadbd.log",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
        )
        sock = f"--socket={self.db_socket}"
        _wait_for(
            "MariaDB",
            lambda: self._ok("mariadb-admin", "--no-defaults", sock, "ping"),
            START_TIMEOUT_S,
            lambda: self.logs("mariadbd"),
        )
        sql = (
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        self.run("mariadb", "--no-defaults", sock, "-u", "root", "-e", sql)

    def _write_configs(self) -> None:
        r, p = self.root, self.ports
        hw = self.run("slurmd", "-C").stdout.splitlines()[0]  # NodeName=<host> CPUs=... RealMemory=...
        hw = re.sub(r"^NodeName=\S+", f"NodeName={self.node} NodeAddr=127.0.0.1", hw)
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={p["ctld"]}
SlurmdPort={p["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/spool/ctld
SlurmdSpoolDir={r}/spool/d
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={p["dbd"]}
AccountingStoragePass={self.munge_socket}
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
{hw}
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")  # AccountingStoragePass = the munge socket for talking to slurmdbd
        dbd = r / "etc" / "slurmdbd.conf"  # found next to $SLURM_CONF; must be 0600
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={p["dbd"]}
SlurmUser=root
LogFile={r}/log/slurmdbd.log
PidFile={r}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={p["db"]}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons newest first (TERM, then KILL); never raises."""
        try:
            if any(name == "slurmctld" and proc.poll() is None for name, proc in self.procs):
                self.run("scancel", "--full", f"--user={getpass.getuser()}", check=False, timeout=10)
                _wait_for(
                    "job cancellation", lambda: not self.run("squeue", "-h", check=False).stdout.strip(), 15
                )
        except Exception as exc:  # the daemons go down regardless
            print(f"slurm teardown: {exc}", file=sys.stderr)
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
