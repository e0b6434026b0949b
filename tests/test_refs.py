"""JobRef: one type for v1 versions and v2 jobs; its key parses back, and nothing else does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.errors import InvalidIdError
from bot.core.keys import Keys
from bot.modelarts.refs import V1Job, V2Job, parse_ref, ref_from_words

UUID = "3faf5c03-aaa1-4cbe-879d-24b05d997347"


class TestRoundTrip:
    @given(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1))
    def test_v1_key_parses_back(self, job, version):
        ref = V1Job(job, version)
        assert parse_ref(ref.key) == ref and ref_from_words(ref.args.split()) == ref

    @given(st.text("0123456789abcdefABCDEF-", min_size=32, max_size=36))
    def test_v2_key_parses_back(self, training_job_id):
        ref = V2Job(training_job_id)
        assert parse_ref(ref.key) == ref and ref_from_words([ref.args]) == ref

    def test_bare_alert_value_of_old_buttons_is_v1(self):
        assert parse_ref("182626:278813") == V1Job(182626, 278813)

    def test_display(self):
        assert str(V1Job(1, 2)) == "job_id 1, version 2"
        assert str(V2Job(UUID)) == f"training_job_id {UUID}"


class TestRefused:
    @pytest.mark.parametrize("value", [
        "", "v2:", "v2:short", f"v2:{UUID}\n", f"v2:{UUID}/../x", "v2:" + "a" * 37, "v1:0:1",
        "v1:1", "v1:1:x", "v3:1:2", "1:2:3", "-1:2", "１:2", f"{UUID}", None, 12, "x" * 100,
    ])
    def test_anything_else_is_invalid(self, value):
        with pytest.raises(InvalidIdError):
            parse_ref(value)

    def test_constructors_validate(self):
        with pytest.raises(InvalidIdError):
            V1Job(0, 1)
        with pytest.raises(InvalidIdError):
            V2Job("not-an-id")


class TestKeys:
    def test_every_flow_key_shares_one_hash_tag(self):
        keys = Keys("p:")
        names = [keys.pending("c"), keys.done("c"), *keys.owed(), keys.usergroup("S1")]
        assert all(name.startswith("p:{flow}:") for name in names)

    def test_a_prefix_with_braces_is_refused(self):
        with pytest.raises(ValueError):
            Keys("a{b}:")

    def test_settings_refuse_a_prefix_with_braces(self):
        from bot.core.errors import ConfigError
        from bot.core.settings import load_settings

        with pytest.raises(ConfigError, match="REDIS_KEY_PREFIX may not contain"):
            load_settings(REDIS_KEY_PREFIX="{bot}:")


class TestRecordsAcrossVersions:
    """A rolling upgrade: a record written by a newer replica (a field this one does not know)
    is read, the unknown field left."""

    def test_a_confirmation_with_a_field_from_a_newer_version(self):
        import json

        from bot.flow.confirmations import Confirmation

        ref = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")
        c = Confirmation("c1", "U1", "C1", "1.1", "1.1", ref, "team-a-x", 1700000000.0)
        newer = json.dumps({**json.loads(c.to_json()), "field_of_v9": {"x": 1}})
        assert Confirmation.from_json(newer) == c

    def test_an_alert_with_a_field_from_a_newer_version(self):
        from bot.alerts.parse import Alert

        alert = Alert("C1", V1Job(182626, 278813), "team-a-resnet", "RUNNING", "loss is NaN")
        assert Alert.from_dict({**alert.to_dict(), "field_of_v9": 1}) == alert
