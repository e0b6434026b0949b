"""Redis as production runs it, from real ``redis-server`` processes on free loopback ports:
a TLS server with an ACL user, a 3-master Redis Cluster, and a primary + replica watched by two
Sentinels. For the tests (tests/plugins/topologies.py) and the failover bench (bench/failover.py);
``trustme`` (a dev dependency) makes the TLS certificates."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from botdev.standin.local import free_port

ACL_USER, ACL_PASSWORD = "bot", "acl-pass-5e0c7d2b91"  # noqa: S105 - distinctive test values
MASTER = "modelarts"
DOWN_AFTER_MS = 1000


def _wait(what: str, ok: Callable[[], bool], timeout: float = 15.0,
          procs: list[subprocess.Popen] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok():
                return
        except (redis.RedisError, OSError):
            pass
        if any(p.poll() is not None for p in procs or []):
            raise RuntimeError(f"a redis process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class Procs:
    """redis-server processes of one topology, each with a config and a log in ``dir``."""

    dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, conf: str, *mode: str) -> subprocess.Popen:
        path = self.dir / f"{name}.conf"
        path.write_text(f"bind 127.0.0.1\nsave \"\"\nappendonly no\ndir {self.dir}\n"
                        f"logfile {self.dir / name}.log\n{conf}")
        exe = shutil.which("redis-server") or "redis-server"
        proc = subprocess.Popen([exe, str(path), *mode],  # noqa: S603 - our own command line
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _answers(**kwargs) -> Callable[[], bool]:
    def ping() -> bool:
        with redis.Redis(socket_timeout=1, socket_connect_timeout=0.5, **kwargs) as client:
            return bool(client.ping())
    return ping


# -- TLS + ACL user -------------------------------------------------------------------------------
@dataclass
class TlsRedis:
    port: int
    ca_file: str          # the CA that signed the server's certificate
    wrong_ca_file: str    # a CA that did not
    user: str = ACL_USER
    password: str = ACL_PASSWORD

    @property
    def url(self) -> str:
        return f"rediss://{self.user}:{self.password}@127.0.0.1:{self.port}/0"


def start_tls(procs: Procs) -> TlsRedis:
    """``--tls-port`` only (no plain port), the default user off, one ACL user limited to the
    ``test:`` keys the tests' prefixes make and to no dangerous command."""
    import trustme

    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca.pem": ca.cert_pem, "wrong-ca.pem": other.cert_pem,
             "server.pem": cert.cert_chain_pems[0], "server.key": cert.private_key_pem}
    for name, blob in files.items():
        blob.write_to_path(str(procs.dir / name))
    port = free_port()
    procs.start("tls", f"port 0\ntls-port {port}\ntls-cert-file {procs.dir / 'server.pem'}\n"
                f"tls-key-file {procs.dir / 'server.key'}\n"
                f"tls-ca-cert-file {procs.dir / 'ca.pem'}\ntls-auth-clients no\n"
                "user default off\n"
                f"user {ACL_USER} on >{ACL_PASSWORD} ~test:* &* +@all -@dangerous\n")
    server = TlsRedis(port, str(procs.dir / "ca.pem"), str(procs.dir / "wrong-ca.pem"))
    _wait("the TLS redis-server", _answers(port=port, ssl=True, ssl_ca_certs=server.ca_file,
                                           username=ACL_USER, password=ACL_PASSWORD),
          procs=procs.procs)
    return server


# -- Cluster --------------------------------------------------------------------------------------
@dataclass
class Cluster:
    ports: list[int]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def start_cluster(procs: Procs, masters: int = 3) -> Cluster:
    """``cluster-enabled yes`` x ``masters``, joined by ``redis-cli --cluster create``."""
    ports = [free_port() for _ in range(masters)]
    for port in ports:
        procs.start(f"node-{port}", f"port {port}\ncluster-enabled yes\ncluster-port "
                    f"{free_port()}\ncluster-config-file nodes-{port}.conf\n"
                    "cluster-node-timeout 2000\n")
    for port in ports:
        _wait(f"cluster node {port}", _answers(port=port), procs=procs.procs)
    subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",  # noqa: S603
                    *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                    "--cluster-yes"], check=True, capture_output=True, timeout=30)

    def ready() -> bool:
        for port in ports:
            with redis.Redis(port=port, socket_timeout=1) as client:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
        return True
    _wait("cluster_state:ok on every node", ready, timeout=30, procs=procs.procs)
    spread(ports, SPREAD)
    return Cluster(ports)


# The even split puts all three subsystem tags on the first master (slots 1317, 4569, 234):
# move the (empty) slots of {alerts} and {iam} so that every master holds one subsystem.
SPREAD = ("{flow}", "{alerts}", "{iam}")


def spread(ports: list[int], tags: tuple[str, ...]) -> None:
    """Give the slot of ``tags[i]`` to the master on ``ports[i]`` (slots must be empty)."""
    from redis.crc import key_slot

    ids = {}
    for port in ports:
        with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
            ids[port] = client.execute_command("CLUSTER", "MYID")
    for port, tag in zip(ports, tags, strict=False):
        slot = key_slot(tag.encode())
        for target in [port, *(p for p in ports if p != port)]:  # the new owner first
            with redis.Redis(port=target, socket_timeout=2) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[port])

    def agreed() -> bool:
        """Each node serves its tag, and sends a command for another's tag to its owner."""
        for port in ports:
            with redis.Redis(port=port, socket_timeout=1) as client:
                for owner, tag in zip(ports, tags, strict=False):
                    try:
                        client.exists(tag)
                        where = port
                    except redis.ResponseError as exc:  # MOVED: "<slot> 127.0.0.1:<port>"
                        tail = str(exc).rsplit(":", 1)[-1]
                        where = int(tail) if tail.isdigit() else 0
                    if where != owner:
                        return False
        return True
    _wait("every node agreeing on the moved slots", agreed)


# -- Sentinel -------------------------------------------------------------------------------------
@dataclass
class Sentineled:
    ports: list[int]          # primary, then replica, at start; failovers swap them
    sentinel_ports: list[int]
    master: str = MASTER

    @property
    def sentinels(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def ask(self, *command: str):
        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=2,
                         decode_responses=True) as client:
            return client.execute_command(*command)

    def master_port(self) -> int:
        return int(self.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)[1])

    def wait_stable(self, timeout: float = 30.0, replica: bool = True) -> int:
        """Every sentinel names one primary and (``replica``) a replica of it is in sync and
        seen healthy, so that a failover may start: the primary's port. After a failover the
        sentinels take about 10 s (their INFO period) to see the old primary as a replica."""
        def stable() -> bool:
            ports = set()
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
                    ports.add(int(client.sentinel_get_master_addr_by_name(self.master)[1]))
                    replicas = client.sentinel_slaves(self.master)
                healthy = [r for r in replicas if r["is_slave"]
                           and not (r["is_sdown"] or r["is_disconnected"])]
                if len(ports) > 1 or (replica and not healthy):
                    return False
            if not replica:
                return True
            other = next(p for p in self.ports if p not in ports)
            with redis.Redis(port=other, socket_timeout=1, decode_responses=True) as client:
                info = client.info("replication")
            return (info.get("role") == "slave" and info.get("master_link_status") == "up"
                    and int(info.get("master_port", 0)) in ports)
        _wait("a stable primary with a replica in sync", stable, timeout)
        return self.master_port()

    def failover(self) -> float:
        """``SENTINEL FAILOVER``: the seconds until the sentinels name the other server."""
        before, started = self.master_port(), time.monotonic()
        self.ask("SENTINEL", "FAILOVER", self.master)
        _wait("the sentinels to name a new primary", lambda: self.master_port() != before)
        return time.monotonic() - started


def start_sentinel(procs: Procs, sentinels: int = 2) -> Sentineled:
    primary, replica = free_port(), free_port()
    procs.start("primary", f"port {primary}\n")
    procs.start("replica", f"port {replica}\nreplicaof 127.0.0.1 {primary}\n")
    ports = [free_port() for _ in range(sentinels)]
    for port in ports:
        procs.start(f"sentinel-{port}", f"port {port}\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary} 1\n"
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {MASTER} 10000\n", "--sentinel")
    setup = Sentineled([primary, replica], ports)
    setup.wait_stable()
    return setup
