"""The roles file re-read while the bot runs (bot.flow.roles_watch): a revoked user is refused
with no restart, a broken file is refused and the old one kept, on a file rewritten in place and
on a ConfigMap volume (a symlink swap), in one process and under gunicorn with SIGHUP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from prometheus_client import REGISTRY

from bot.core.errors import ConfigError
from bot.flow.blocks import CONFIRM
from bot.flow.roles import parse_roles
from bot.flow.roles_watch import RolesWatch, load
from bot.modelarts.refs import V1Job
from botdev.standin.local import free_port, wait_healthy
from botdev.standin.signing import slack_headers
from tests.plugins.slack import ROLES, SIGNING_SECRET, responses, start_serve, wait_until
from tests.test_stop_flow import request_message

JOB, VERSION = 182626, 278813          # team-a-resnet, RUNNING: U0ALICE's role allows it
REVOKED = ROLES.replace("  U0ALICE: [team-a]\n", "")
BROKEN = "roles: [\n"


class ConfigMapVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume: ``roles.yml`` ->
    ``..data/roles.yml``, ``..data`` -> ``..<version>``; ``update`` writes a new version and
    swaps ``..data`` with one rename, as the kubelet's AtomicWriter does."""

    def __init__(self, root: Path, text: str) -> None:
        self.root = root
        self.version = 0
        self.update(text)
        (root / "roles.yml").symlink_to("..data/roles.yml")
        self.path = str(root / "roles.yml")

    def update(self, text: str) -> None:
        self.version += 1
        new = self.root / f"..2026_01_01_00_00_{self.version:02d}.000000001"
        new.mkdir()
        (new / "roles.yml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(new.name)
        os.replace(tmp, self.root / "..data")   # one rename: readers see old or new, whole


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def refused_total() -> float:
    return REGISTRY.get_sample_value("modelarts_bot_roles_reloads_refused_total") or 0.0


def wait_for(check, timeout: float = 30.0):
    return wait_until(check, timeout)


class TestWatch:
    """One check at a time, on real files."""

    @pytest.fixture
    def path(self, tmp_path) -> Path:
        path = tmp_path / "roles.yml"
        path.write_text(ROLES)
        return path

    def watch(self, path, applied: list) -> RolesWatch:
        return RolesWatch(str(path), load(str(path)), applied.append)

    def test_a_new_file_that_parses_is_applied_with_its_hash(self, path):
        applied: list = []
        watch = self.watch(path, applied)
        assert watch.check() == "unchanged"
        path.write_text(REVOKED)
        assert watch.check() == "loaded"
        assert applied == [parse_roles(REVOKED)] and "U0ALICE" not in applied[0].users
        assert watch.loaded.sha256 == sha(REVOKED)
        assert REGISTRY.get_sample_value("modelarts_bot_roles_loaded",
                                         {"sha256": sha(REVOKED)}) == watch.loaded.at
        assert REGISTRY.get_sample_value("modelarts_bot_roles_loaded",
                                         {"sha256": sha(ROLES)}) is None

    def test_the_same_text_again_is_no_reload(self, path):
        applied: list = []
        watch = self.watch(path, applied)
        path.write_text(ROLES)   # a new mtime, the same bytes
        assert watch.check() == "unchanged" and applied == []

    def test_a_broken_file_is_refused_once_and_the_old_one_kept(self, path, caplog):
        applied: list = []
        watch = self.watch(path, applied)
        before, counted = watch.loaded, refused_total()
        path.write_text(BROKEN)
        assert watch.check() == "refused"
        assert watch.check() == "unchanged"   # the same bad file: told once
        assert watch.loaded is before and applied == []
        assert refused_total() == counted + 1
        refusals = [r for r in caplog.records if "roles file refused" in r.getMessage()]
        assert len(refusals) == 1 and "not valid YAML at line 2" in refusals[0].getMessage()
        assert watch.check(forced=True) == "refused"   # SIGHUP asks again: told again
        assert refused_total() == counted + 2

    def test_a_missing_file_is_refused_and_its_return_is_no_reload(self, path):
        applied: list = []
        watch = self.watch(path, applied)
        path.unlink()
        assert watch.check() == "refused" and watch.check() == "unchanged"
        path.write_text(ROLES)
        assert watch.check() == "unchanged" and applied == []
        path.write_text(REVOKED)
        assert watch.check() == "loaded"

    def test_a_configmap_symlink_swap_is_seen(self, tmp_path):
        (tmp_path / "cm").mkdir()
        volume = ConfigMapVolume(tmp_path / "cm", ROLES)
        applied: list = []
        watch = RolesWatch(volume.path, load(volume.path), applied.append)
        volume.update(REVOKED)
        assert watch.check() == "loaded" and watch.loaded.sha256 == sha(REVOKED)
        volume.update(BROKEN)
        assert watch.check() == "refused" and watch.loaded.sha256 == sha(REVOKED)

    def test_start_up_still_refuses_a_broken_file(self, path):
        path.write_text(BROKEN)
        with pytest.raises(ConfigError, match="not valid YAML"):
            load(str(path))


def alice_stop(bot) -> None:
    assert bot.command(f"stop {JOB} {VERSION}", user="U0ALICE").status_code == 200


class TestRunningBot:
    """A served replica with its background threads: the watch polls the file every 2 s."""

    def test_a_revoked_user_cannot_confirm_without_a_restart(self, running, slack_api,
                                                             emulator, tmp_path):
        (tmp_path / "cm").mkdir()
        volume = ConfigMapVolume(tmp_path / "cm", ROLES)
        bot = running(ROLES_FILE=volume.path)
        alice_stop(bot)
        msg = request_message(slack_api)    # allowed: the request waits for her confirm
        changed = time.monotonic()
        volume.update(REVOKED)
        wait_for(lambda: bot.bot.roles_watch.loaded.sha256 == sha(REVOKED))
        took = time.monotonic() - changed
        assert bot.click_button(msg, CONFIRM, "U0ALICE").status_code == 200
        slack_api.wait_for(lambda: "no longer holds a role that allows it" in msg.text)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        print(f"revoked after {took:.2f} s")   # noqa: T201 - the figure, for the notes

    def test_a_broken_file_is_refused_and_the_old_one_still_allows(self, running, slack_api,
                                                                   emulator, roles_file):
        bot = running()
        counted = refused_total()
        roles_file.write_text(BROKEN)
        wait_for(lambda: refused_total() > counted)
        assert bot.bot.roles_watch.loaded.sha256 == sha(ROLES)
        alice_stop(bot)
        msg = request_message(slack_api)
        assert bot.click_button(msg, CONFIRM, "U0ALICE").status_code == 200
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1


class Output:
    """The lines of a ``serve`` process, read as they come (each must be one JSON object)."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines)]

    def saying(self, text: str) -> list[dict]:
        return [r for r in self.records() if text in r["msg"]]

    def wait(self, text: str, count: int = 1) -> list[dict]:
        return wait_for(lambda: (got := self.saying(text)) and len(got) >= count and got)


def command(base: str, slack_api, user: str, text: str, name: str) -> None:
    body = urlencode({"command": "/modelarts", "text": text, "user_id": user,
                      "channel_id": "C0INCIDENT", "team_id": "T0STANDIN",
                      "response_url": slack_api.response_url(f"{name}-{user}")})
    resp = requests.post(base + "/slack/events", data=body,
                         headers=slack_headers(SIGNING_SECRET, body), timeout=10)
    assert resp.status_code == 200


@pytest.mark.slow
class TestServe:
    """The real ``python -m bot serve``: gunicorn's master and its workers."""

    @pytest.fixture
    def serve(self, serve_env, tmp_path):
        procs = []

        def start(roles: str, **env: str):
            port = free_port()
            proc = start_serve({**serve_env, "ROLES_FILE": roles, "METRICS_OPEN": "true",
                                **env}, tmp_path, port)
            procs.append(proc)
            out = Output(proc)
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            return f"http://127.0.0.1:{port}", proc, out

        yield start
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

    def test_sighup_rereads_in_every_worker_without_a_restart(self, serve, tmp_path,
                                                              slack_api, emulator):
        (tmp_path / "cm").mkdir()
        volume = ConfigMapVolume(tmp_path / "cm", ROLES)
        base, proc, out = serve(volume.path, WEB_CONCURRENCY="2")
        volume.update(BROKEN)
        out.wait("roles file refused", 2)        # each worker, once
        proc.send_signal(signal.SIGHUP)
        out.wait("roles file refused", 4)        # told again, by each worker
        volume.update(REVOKED)
        proc.send_signal(signal.SIGHUP)
        out.wait("roles file reloaded", 2)
        assert len(out.saying("Booting worker")) == 2   # no worker was restarted
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        for n in range(4):   # whichever worker answers
            command(base, slack_api, "U0ALICE", f"stop {JOB} {VERSION}", f"n{n}")
        slack_api.wait_for(lambda: sum("no role" in t for t in responses(slack_api, "U0ALICE"))
                           == 4)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        scraped = requests.get(base + "/metrics", timeout=5).text
        assert f'modelarts_bot_roles_loaded{{sha256="{sha(REVOKED)}"}}' in scraped
        assert f'modelarts_bot_roles_loaded{{sha256="{sha(ROLES)}"}} 0.0' in scraped
        assert "modelarts_bot_roles_reloads_refused_total 4.0" in scraped
        for record in out.records():   # every line one JSON object (json.loads raised if not)
            assert record.keys() >= {"ts", "level", "logger", "msg"}

    def test_a_worker_started_later_begins_with_the_masters_latest_good_file(
            self, serve, tmp_path, slack_api, emulator):
        """The file went good (Alice revoked) then bad; a new worker must not fall back to the
        file read at start-up, which still allowed her."""
        (tmp_path / "cm").mkdir()
        volume = ConfigMapVolume(tmp_path / "cm", ROLES)
        base, proc, out = serve(volume.path, WEB_CONCURRENCY="1")
        volume.update(REVOKED)
        out.wait("roles file reloaded")
        proc.send_signal(signal.SIGHUP)          # the master's check, logged once done
        out.wait(f"the master holds the roles file sha256 {sha(REVOKED)[:12]}")
        volume.update(BROKEN)
        out.wait("roles file refused")
        worker = int(out.saying("Booting worker with pid")[0]["msg"].rsplit(" ", 1)[1])
        os.kill(worker, signal.SIGKILL)
        out.wait("Booting worker with pid", 2)
        out.wait("roles file refused", 2)        # the new worker refuses the bad file too
        wait_healthy(base, proc)
        command(base, slack_api, "U0ALICE", f"stop {JOB} {VERSION}", "after")
        slack_api.wait_for(lambda: any("no role" in t for t in responses(slack_api, "U0ALICE")))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
