"""The roles file and the role check: deny by default, globs on job names, usergroups."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from bot.core.errors import ConfigError
from bot.core.keys import Keys
from bot.flow.roles import RoleChecker, parse_roles
from botdev.standin.slack import BOT_TOKEN
from tests.plugins.slack import ROLES


class TestParse:
    def test_example_parses(self):
        roles = parse_roles(ROLES)
        assert roles.jobs["team-a"] == ("team-a-*",) and roles.users["U0ONCALL"] == ("oncall",)
        assert roles.usergroups == {"S0TEAMA": ("team-a",)}

    @pytest.mark.parametrize("text,needle", [
        ("roles: [", "not valid YAML at line"),
        ("users: {}", "needs a 'roles:' mapping"),
        ("roles:\n  a: {}\n", "roles.a needs a 'jobs:' list"),
        ("roles:\n  a: {jobs: '*'}\n", "roles.a.jobs must be a list of strings"),
        ("roles:\n  a: {jobs: ['*']}\nusers:\n  U1: [b]\n", "users.U1 names role 'b'"),
        ("roles:\n  a: {jobs: ['*']}\nusergroups:\n  S1: [b]\n", "usergroups.S1 names role 'b'"),
        ("roles:\n  a: {jobs: ['*']}\nadmins: {}\n", "unknown section(s) admins"),
        ("roles:\n  a: {jobs: ['*']}\nprotected: {jobs: ['*']}\n", "'protected:' must be a list"),
        ("roles:\n  a: {jobs: ['*']}\nprotected:\n  - {approvers: [a]}\n",
         "protected[0] needs a 'jobs:' list"),
        ("roles:\n  a: {jobs: ['*']}\nprotected:\n  - {jobs: ['*'], approvers: [lead]}\n",
         "protected[0].approvers names role 'lead'"),
        ("roles:\n  a: {jobs: ['*']}\nprotected:\n  - {jobs: ['*'], who: [a]}\n",
         "protected[0]: unknown key(s) who"),
        ("roles:\n  a: {jobs: ['*']}\nprotected:\n  - {jobs: 'prod-*'}\n",
         "protected[0].jobs must be a list of strings"),
    ])
    def test_errors_say_where(self, text, needle):
        with pytest.raises(ConfigError) as err:
            parse_roles(text, source="roles.yml")
        assert needle in str(err.value) and str(err.value).startswith("roles.yml")


class TestProtected:
    TEXT = """
roles:
  oncall: {jobs: ["*"]}
  lead: {jobs: ["*"]}
  team-a: {jobs: ["team-a-*"]}
users:
  U0ONCALL: [oncall]
  U0LEAD: [lead]
  U0ALICE: [team-a]
protected:
  - jobs: ["*-pretrain-*", "prod-*"]
    approvers: [lead]
  - jobs: ["team-b-*"]
"""

    def test_the_first_entry_that_covers_a_job_decides(self):
        roles = parse_roles(self.TEXT)
        assert roles.protection("team-a-llm-pretrain-1").approvers == ("lead",)
        assert roles.protection("prod-ranker").approvers == ("lead",)
        assert roles.protection("team-b-yolo").approvers == ()   # any role that allows the job
        assert roles.protection("team-a-resnet50") is None
        assert parse_roles(ROLES).protected == ()

    def test_an_approver_needs_a_listed_role_that_allows_the_job(self, slack_api, redis_client,
                                                                  key_prefix):
        client = WebClient(token=BOT_TOKEN, base_url=slack_api.api_url)
        checker = RoleChecker(parse_roles(self.TEXT), client, redis_client, key_prefix)
        assert checker.check("U0LEAD", "prod-ranker", among=("lead",)).allowed
        assert not checker.check("U0ONCALL", "prod-ranker", among=("lead",)).allowed
        assert checker.check("U0ONCALL", "prod-ranker").allowed
        assert not checker.check("U0ALICE", "prod-ranker", among=("lead",)).allowed


class TestCheck:
    @pytest.fixture
    def checker(self, slack_api, redis_client, key_prefix):
        client = WebClient(token=BOT_TOKEN, base_url=slack_api.api_url)
        return RoleChecker(parse_roles(ROLES), client, redis_client, key_prefix, cache_seconds=30)

    def test_unmapped_user_is_denied_with_the_roles_that_would_allow(self, checker):
        verdict = checker.check("U0NOBODY", "team-a-resnet")
        assert not verdict.allowed and verdict.would_allow == ["oncall", "team-a"]

    def test_glob_must_match_the_job_name(self, checker):
        assert checker.check("U0ALICE", "team-a-resnet").allowed
        assert not checker.check("U0ALICE", "team-b-yolo").allowed
        assert not checker.check("U0ALICE", "xteam-a-resnet").allowed

    def test_usergroup_membership_is_cached_in_redis(self, checker, slack_api, redis_client,
                                                     key_prefix):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        assert checker.check("U0CAROL", "team-a-x").allowed
        assert checker.check("U0CAROL", "team-a-y").allowed
        assert len(slack_api.calls_to("usergroups.users.list")) == 1
        assert redis_client.ttl(Keys(key_prefix).usergroup("S0TEAMA")) > 0

    def test_prefetched_cache_is_used_without_reading_redis(self, checker, slack_api,
                                                            key_prefix):
        """What the confirm click fetched with its consume is enough: no second round trip."""
        keys = checker.cache_keys("U0CAROL")
        assert keys == [Keys(key_prefix).usergroup("S0TEAMA")]
        assert checker.cache_keys("U0ALICE") == []
        checker.redis = None   # any Redis call would fail now
        assert checker.check("U0CAROL", "team-a-x", {keys[0]: b'["U0CAROL"]'}).allowed
        assert not checker.check("U0DAVE", "team-a-x", {keys[0]: b'["U0CAROL"]'}).allowed
        assert slack_api.calls_to("usergroups.users.list") == []

    def test_failing_usergroup_lookup_denies(self, checker, slack_api):
        slack_api.fail_next("usergroups.users.list", body={"error": "missing_scope"})
        assert not checker.check("U0CAROL", "team-a-x").allowed
