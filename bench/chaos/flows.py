"""The chaos run's traffic: a Slack stand-in that indexes what the bot posted, and the flows
(commands, clicks, alerts, hostile input) sent to whichever replica is up, as a load balancer
would."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests

from bot.alerts.blocks import STOP_REQUEST
from bot.flow.blocks import CANCEL, CONFIRM
from bot.modelarts.refs import V1Job
from botdev.standin.signing import slack_headers
from botdev.standin.slack import SlackStandIn

TEAM = "T0CHAOS"
JOB_REF = re.compile(r"job_id (\d+)")
ASKER = re.compile(r"^<@(\w+)> asks to stop")
HELD = "Already being stopped"
ALERT_MARK = re.compile(r"chaos-alert-(\d+)\b")
CHANNELS = [f"C0CHAOS{i:02d}" for i in range(24)]
ALERT_CHANNELS = [f"C0ALERT{i:02d}" for i in range(4)]
FIRST_JOB, FIRST_VERSION = 600000, 700000


@dataclass
class Posted:
    cid: str
    channel: str
    ts: str
    thread_ts: str | None
    blocks: list

    @property
    def thread(self) -> str:
        return self.thread_ts or self.ts


class RecordingStandIn(SlackStandIn):
    """The stand-in, plus an index of confirmation requests (by job id) and alerts (by number),
    kept from the moment Slack accepted them (chat.update later removes the buttons)."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        super().__init__(tokens=tokens)
        self.requests: dict[int, list[Posted]] = defaultdict(list)
        self.by_cid: dict[str, Posted] = {}
        self.alerts: dict[int, list[tuple[str, str]]] = defaultdict(list)

    def _m_chat_postMessage(self, params, now):
        status, body, extra = super()._m_chat_postMessage(params, now)
        if status != 200 or not body.get("ok"):
            return status, body, extra
        text, blocks = str(params.get("text", "")), body["message"].get("blocks") or []
        cid = _button(blocks, CONFIRM)
        job = JOB_REF.search(text)
        if cid and job:
            posted = Posted(cid, body["channel"], body["ts"], params.get("thread_ts"), blocks)
            self.requests[int(job.group(1))].append(posted)
            self.by_cid[cid] = posted
        mark = ALERT_MARK.search(text)
        if mark and not params.get("thread_ts"):
            self.alerts[int(mark.group(1))].append((body["channel"], body["ts"]))
        return status, body, extra

    def join_usergroup(self, group: str, user: str) -> None:
        with self._lock:
            self.usergroups.setdefault(group, []).append(user)

    def leave_usergroup(self, group: str, user: str) -> None:
        with self._lock:
            self.usergroups[group].remove(user)

    def clear_failures(self) -> None:
        """Forget the failures queued with ``fail_next`` that have not been served yet."""
        with self._lock:
            self.failures.clear()

    def call_params(self) -> list[str]:
        """The parameters of every call the stand-in received, as JSON (to look for secrets)."""
        with self._lock:
            return [json.dumps(c.params, default=str) for c in self.calls]

    def responses(self, name: str) -> list[str]:
        """Texts posted to ``response_url(name)``."""
        with self._lock:
            return [str(c.params.get("text", "")) for c in self.calls
                    if c.method == f"response/{name}"]

    def thread_texts(self, channel: str, thread: str) -> list[str]:
        with self._lock:
            return [m.text for m in self.messages.values()
                    if m.channel == channel and m.thread_ts == thread]


def _button(blocks: list, action_id: str) -> str | None:
    for block in blocks if isinstance(blocks, list) else []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return element.get("value")
    return None


@dataclass
class Job:
    job_id: int
    version_id: int
    name: str


def seed(count: int) -> tuple[dict, list[Job]]:
    """An emulator seed with ``count`` RUNNING versions, one per flow, half per team."""
    jobs = [Job(FIRST_JOB + n, FIRST_VERSION + n, f"team-{'ab'[n % 2]}-chaos-{n}")
            for n in range(count)]
    data = {"jobs": [{"job_id": j.job_id, "job_name": j.name, "job_desc": "chaos",
                      "versions": [{"version_id": j.version_id, "status": 8}]} for j in jobs]}
    return data, jobs


ROLES = """
roles:
  oncall: {jobs: ["*"]}
  team-a: {jobs: ["team-a-*"]}
  team-b: {jobs: ["team-b-*"]}
users:
  U0ONCALL: [oncall]
  U0ALICE: [team-a]
  U0BOB: [team-b]
  U0DAVE: [oncall]
  U0ERIN: [oncall]
usergroups:
  S0CHAOS: [oncall]
"""


@dataclass
class Flow:
    n: int
    kind: str
    job: Job
    eligible: bool = False          # may a stop of this job happen (valid confirm sent)?
    confirmed: list[str] = field(default_factory=list)  # cids the requester clicked Confirm on
    faults: list[str] = field(default_factory=list)
    alert_accepted: bool | None = None
    note: str = ""
    crowd: list[str] = field(default_factory=list)   # "crowd": who asked (and was routed)
    asker: str = ""                                  # whose request got the confirmation


class Traffic:
    """Sends Slack-signed requests and alerts to the replicas; records every answer."""

    def __init__(self, replicas, standin: RecordingStandIn, emulator, secret: str,
                 alerts_token: str, ttl: int, rng: random.Random) -> None:
        self.replicas = replicas
        self.standin = standin
        self.emulator = emulator
        self.secret = secret
        self.alerts_token = alerts_token
        self.ttl = ttl
        self.rng = rng
        self.rng_lock = threading.Lock()
        self.local = threading.local()
        self.lock = threading.Lock()
        self.statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.bodies: list[str] = []
        self.unrouted = 0                # requests no replica could take
        self.ack_ms: list[float] = []
        self.faults: dict[str, int] = defaultdict(int)

    # -- plumbing ----------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        with self.rng_lock:
            return self.rng.random() < p

    def pick(self, seq):
        with self.rng_lock:
            return self.rng.choice(seq)

    def session(self) -> requests.Session:
        if not hasattr(self.local, "http"):
            self.local.http = requests.Session()
        return self.local.http

    def send(self, path: str, data: bytes, headers: dict[str, str],
             kind: str) -> requests.Response | None:
        """POST to a random live replica; on a refused connection, to the other (a balancer)."""
        order = list(self.replicas)
        with self.rng_lock:
            self.rng.shuffle(order)
        for replica in order:
            started = time.monotonic()
            try:
                resp = self.session().post(replica.url + path, data=data, headers=headers,
                                           timeout=10)
            except requests.RequestException:
                continue
            with self.lock:
                self.statuses[kind][resp.status_code] += 1
                self.bodies.append(resp.text)
                if kind == "slack":
                    self.ack_ms.append((time.monotonic() - started) * 1000)
            return resp
        with self.lock:
            self.unrouted += 1
        return None

    def slack(self, body: str, *, secret: str | None = None,
              headers: dict | None = None) -> requests.Response | None:
        signed = slack_headers(secret or self.secret, body)
        return self.send("/slack/events", body.encode(), {**signed, **(headers or {})}, "slack")

    def command(self, text: str, user: str, channel: str,
                reply_to: str | None = None) -> requests.Response | None:
        """``reply_to``: the response_url's name (default: the user's)."""
        return self.slack(urlencode({
            "token": "legacy-unused", "team_id": TEAM, "team_domain": "chaos",
            "channel_id": channel, "channel_name": "chaos", "user_id": user,
            "user_name": user.lower(), "command": "/modelarts", "text": text, "api_app_id": "A0",
            "trigger_id": f"{time.time()}.t",
            "response_url": self.standin.response_url(reply_to or user)}))

    def click(self, action_id: str, value: str, user: str, channel: str, ts: str,
              blocks: list | None = None, retry: bool = False) -> requests.Response | None:
        payload = {
            "type": "block_actions", "api_app_id": "A0", "token": "legacy-unused",
            "team": {"id": TEAM, "domain": "chaos"}, "user": {"id": user, "team_id": TEAM},
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "channel": {"id": channel, "name": "chaos"},
            "message": {"type": "message", "ts": ts, "text": "", "blocks": blocks or []},
            "trigger_id": f"{time.time()}.t", "response_url": self.standin.response_url(user),
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b",
                         "value": value, "action_ts": str(time.time())}]}
        extra = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        return self.slack(urlencode({"payload": json.dumps(payload)}), headers=extra)

    def alert(self, n: int, job: Job, channel: str) -> bool | None:
        """POST one alert, retrying while the intake cannot take it (as Alertmanager does).
        True: accepted; False: refused (4xx); None: never answered 202 in time."""
        body = json.dumps({"channel": channel, "job_id": str(job.job_id),
                           "version_id": str(job.version_id), "job_name": job.name,
                           "status": "RUNNING", "summary": f"chaos-alert-{n} loss is NaN",
                           "severity": "critical"}).encode()
        headers = {"Authorization": f"Bearer {self.alerts_token}",
                   "Content-Type": "application/json"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            resp = self.send("/alerts", body, headers, "alerts")
            if resp is not None and resp.status_code == 202:
                return True
            if resp is not None and resp.status_code < 500:
                return False
            time.sleep(0.5)
        return None

    # -- waiting for the bot -----------------------------------------------------------------
    def wait_requests(self, job: Job, count: int = 1, timeout: float = 15.0) -> list[Posted]:
        try:
            return self.standin.wait_for(
                lambda: (lambda got: got if len(got) >= count else None)(
                    list(self.standin.requests.get(job.job_id, ()))), timeout)
        except TimeoutError:
            return list(self.standin.requests.get(job.job_id, ()))

    def wait_alert(self, n: int, timeout: float = 40.0) -> tuple[str, str] | None:
        try:
            return self.standin.wait_for(lambda: (self.standin.alerts.get(n) or [None])[0],
                                         timeout)
        except TimeoutError:
            return None

    # -- faults on one flow's job --------------------------------------------------------------
    def job_fault(self, flow: Flow) -> None:
        """Maybe make this flow's stop call go wrong (the emulator counts a stop only when the
        work ran, so a fault "before" means no stop and "after" means a stop and a lost answer)."""
        if not self.chance(0.3):
            return
        kind = self.pick(["html_500", "failure_503", "timeout", "slow_answer", "drop_after"])
        ref = V1Job(flow.job.job_id, flow.job.version_id)
        if kind == "html_500":
            self.emulator.set_fault(ref, "html_500", on="stop")
        elif kind == "failure_503":
            self.emulator.set_fault(ref, "failure", on="stop", http_status=503,
                                    error_code="ModelArts.0010", error_msg="Service unavailable")
        elif kind == "timeout":     # the stop runs, the answer comes after the client gave up
            self.emulator.set_fault(ref, "slow", on="stop", when="after", delay=3.0)
        elif kind == "slow_answer":
            self.emulator.set_fault(ref, "slow", on="stop", when="before", delay=1.2)
        else:
            self.emulator.set_fault(ref, "drop", on="stop", when="after")
        flow.faults.append(kind)
        with self.lock:
            self.faults["modelarts_" + kind] += 1

    def requester(self, job: Job) -> str:
        team = "U0ALICE" if "team-a" in job.name else "U0BOB"
        return self.pick(["U0ONCALL", team])

    def outsider(self, job: Job) -> str:
        return "U0BOB" if "team-a" in job.name else "U0ALICE"


def run_flow(t: Traffic, flow: Flow) -> Flow:
    kind, job = flow.kind, flow.job
    channel = CHANNELS[flow.n % len(CHANNELS)]
    user = t.requester(job)
    if kind == "alert":
        return _alert_flow(t, flow, user)
    if kind == "hostile":
        _hostile(t, flow, channel)
        return flow
    if kind == "crowd":
        return _crowd_flow(t, flow, channel)
    if kind == "status":
        t.command(f"status {job.job_id} {job.version_id}", user, channel)
        return flow
    if kind == "denied":
        t.command(f"stop {job.job_id} {job.version_id}", t.outsider(job), channel)
        time.sleep(0.5)
        return flow
    if kind == "revoked":
        user = f"U0CAROL{flow.n}"
        t.standin.join_usergroup("S0CHAOS", user)
    if kind == "lookup_fault":
        t.emulator.set_fault(V1Job(job.job_id, job.version_id), "html_500", on="get", times=1)
        flow.faults.append("lookup_500")
        with t.lock:
            t.faults["modelarts_lookup_500"] += 1
    t.command(f"stop {job.job_id} {job.version_id}", user, channel)
    if kind == "lookup_fault":
        time.sleep(0.5)
        return flow
    got = t.wait_requests(job)
    if not got:
        flow.note = "no confirmation request seen"
        return flow
    req = got[0]
    if kind == "revoked":
        t.standin.leave_usergroup("S0CHAOS", user)
    t.job_fault(flow)
    _clicks(t, flow, req, user)
    return flow


def _clicks(t: Traffic, flow: Flow, req: Posted, user: str) -> None:
    kind = flow.kind

    def confirm(retry: bool = False, who: str = user, cid: str = req.cid,
                channel: str = req.channel):
        if who == user and cid == req.cid and channel == req.channel:
            flow.confirmed.append(cid)
        return t.click(CONFIRM, cid, who, channel, req.ts, req.blocks, retry=retry)

    def cancel():
        return t.click(CANCEL, req.cid, user, req.channel, req.ts, req.blocks)

    if kind == "confirm":
        flow.eligible = True
        confirm()
    elif kind == "double_click":
        flow.eligible = True
        _together([confirm, lambda: confirm(retry=True), confirm][: 2 + t.chance(0.5)])
    elif kind == "cancel":
        cancel()       # acked at once, handled after: wait until it took effect
        try:
            t.standin.wait_for(lambda: "Cancelled by" in t.standin.messages[
                (req.channel, req.ts)].text, 10)
        except TimeoutError:
            flow.note = "cancel not seen"
            return
        confirm()      # already handled: must stop nothing
        flow.confirmed.clear()
    elif kind == "race":
        flow.eligible = True
        _together([cancel, confirm])
    elif kind == "wrong_user":
        confirm(who=t.outsider(flow.job))
        confirm(who="U0STRANGER")
        flow.eligible = True
        confirm()
    elif kind == "forged":
        confirm(cid="forged-" + req.cid[:10])
        confirm(cid=req.cid[::-1])
        cancel()
        flow.confirmed.clear()
    elif kind == "expired":
        time.sleep(t.ttl + 1.5)
        confirm()
        flow.confirmed.clear()
    elif kind == "revoked":
        confirm()
        flow.confirmed.clear()


def _together(calls) -> None:
    threads = [threading.Thread(target=c) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def crowd_reply(user: str, flow: Flow) -> str:
    return f"{user}-crowd-{flow.n}"


def _crowd_flow(t: Traffic, flow: Flow, channel: str) -> Flow:
    """Several responders ask to stop one job at once, on any replica: one confirmation, the
    others told who asked (check.py: promise 6). Its requester confirms it."""
    job = flow.job
    users = ["U0ONCALL", "U0DAVE", "U0ERIN", "U0ALICE" if "team-a" in job.name else "U0BOB"]

    def ask(user: str) -> None:
        if t.command(f"stop {job.job_id} {job.version_id}", user, channel,
                     reply_to=crowd_reply(user, flow)) is not None:
            with t.lock:
                flow.crowd.append(user)

    _together([lambda u=u: ask(u) for u in users])
    got = t.wait_requests(job)
    if not got:
        flow.note = "no confirmation request seen"
        return flow
    time.sleep(0.5)          # a second confirmation, if one were made, shows itself now
    req = got[0]
    asker = ASKER.match(t.standin.messages[(req.channel, req.ts)].text)
    if not asker:
        flow.note = "no requester in the confirmation"
        return flow
    flow.asker = asker.group(1)
    t.job_fault(flow)
    flow.eligible = True
    flow.confirmed.append(req.cid)
    t.click(CONFIRM, req.cid, flow.asker, req.channel, req.ts, req.blocks)
    return flow


def _alert_flow(t: Traffic, flow: Flow, user: str) -> Flow:
    channel = ALERT_CHANNELS[flow.n % len(ALERT_CHANNELS)]
    flow.alert_accepted = t.alert(flow.n, flow.job, channel)
    if not flow.alert_accepted:
        return flow
    posted = t.wait_alert(flow.n)
    if posted is None or t.chance(0.4):
        flow.note = "alert not seen in time" if posted is None else ""
        return flow
    value = f"{flow.job.job_id}:{flow.job.version_id}"
    presses = 2 if t.chance(0.3) else 1    # a double press: one request (the job's claim)
    _together([lambda: t.click(STOP_REQUEST, value, user, posted[0], posted[1])] * presses)
    got = t.wait_requests(flow.job)
    if not got:
        flow.note = "no confirmation request after the Stop press"
        return flow
    t.job_fault(flow)
    flow.eligible = True
    first = got[0]
    flow.confirmed.append(first.cid)
    t.click(CONFIRM, first.cid, user, first.channel, first.ts, first.blocks)
    return flow


HOSTILE_TEXTS = ["stop", "stop 0 0", "stop -1 5", "stop 99999999999999999999 1", "stop a b",
                 "stop 1 2 3", "\u202estop 600000 700000", "stop\x00 1 2", "status \U0001f600 1",
                 "x" * 5000, "stop 600000 700000 " + "9" * 300, "' OR 1=1 --", "<@U0ONCALL>"]


def _hostile(t: Traffic, flow: Flow, channel: str) -> None:
    """Bad input aimed at this flow's job: nothing may change (its stop count stays 0)."""
    job = flow.job
    pick = t.pick(range(7))
    if pick == 0:
        t.command(t.pick(HOSTILE_TEXTS), "U0ONCALL", channel)
    elif pick == 1:    # a forged signature, then a stale timestamp
        body = urlencode({"command": "/modelarts", "text": f"stop {job.job_id} {job.version_id}",
                          "user_id": "U0ONCALL", "channel_id": channel, "team_id": TEAM})
        t.slack(body, secret="not-the-secret")  # noqa: S106 - a wrong one on purpose
        t.send("/slack/events", body.encode(), slack_headers(t.secret, body, 1), "slack")
    elif pick == 2:    # malformed interactive payloads
        for payload in ({}, {"type": "block_actions"}, {"type": "block_actions", "actions": [{}]},
                        {"type": "block_actions", "user": {"id": 5}, "actions": [
                            {"action_id": CONFIRM, "value": ["x"]}]}, [1, 2], "payload"):
            t.slack(urlencode({"payload": json.dumps(payload)}))
        t.slack("payload=%7Bnot-json")
    elif pick == 3:    # a forged alert Stop button by someone without a role
        t.click(STOP_REQUEST, f"{job.job_id}:{job.version_id}", "U0STRANGER", channel, "1.1")
    elif pick == 4:    # a body over the limit: 413, or the server hangs up before reading it
        replica = t.pick(t.replicas)
        try:
            resp = t.session().post(replica.url + "/slack/events", data=b"payload=" + b"A" * (
                (1 << 20) + 64), headers=slack_headers(t.secret, b"x"), timeout=10)
            with t.lock:
                t.statuses["slack"][resp.status_code] += 1
        except requests.RequestException:
            pass
    elif pick == 5:    # alerts with a wrong token or a broken body
        t.send("/alerts", b"{}", {"Authorization": "Bearer wrong"}, "alerts")
        t.send("/alerts", b"\xff\xfe{", {"Authorization": f"Bearer {t.alerts_token}"}, "alerts")
    else:              # a confirm click on a confirmation id that never existed
        t.click(CONFIRM, "A" * 64, "U0ONCALL", channel, "1.1")
