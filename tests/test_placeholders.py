"""The one placeholder list (bot/core/settings.py) against the files it stands for: every example
value of .env.example and deploy/kubernetes/secret.yaml is either a placeholder, which stops
`serve` and fails `doctor` naming its variable, or a sample listed here that works as given. A
new example value fails this test until it is one or the other; a list entry no file ships
fails it too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.core.errors import ConfigError
from bot.core.settings import PLACEHOLDERS, Settings, is_placeholder, load_settings

ROOT = Path(__file__).resolve().parents[1]

# Example values that are not placeholders: real endpoints and names that work as written.
SAMPLES = {
    "MODELARTS_ENDPOINT": "https://modelarts.cn-north-4.myhuaweicloud.com",   # a real region
    "MODELARTS_IAM_ENDPOINT": "https://iam.cn-north-4.myhuaweicloud.com",
    "MODELARTS_PROJECT_NAME": "cn-north-4",
    # A channel id in the right form: optional, and a wrong one shows at the first alert
    # (channel_not_found in the dispatcher's log and metrics). UNCONFIRMED: not a placeholder.
    "ALERTS_CHANNEL": "C0123456789",
    # Whom to ask: a channel name is shown as it is written (bot/core/contact.py).
    "SUPPORT_CONTACT": "#ml-platform",
    "SMN_TOPICS": '{"urn:smn:cn-north-4:0123456789abcdef0123456789abcdef:modelarts-events": '
                  '"C0123456789"}',
}


def env_example() -> list[tuple[str, str]]:
    """Every ``NAME=value`` line of .env.example, commented out or not (a value is one word or
    a JSON object: ``# METRICS_OPEN=true (a private port only).`` is prose)."""
    text = (ROOT / ".env.example").read_text()
    return re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=(\{.*\}|\S*)$", text, re.MULTILINE)


def secret_yaml() -> list[tuple[str, str]]:
    doc = yaml.safe_load((ROOT / "deploy/kubernetes/secret.yaml").read_text())
    return [(k, str(v)) for k, v in doc["stringData"].items()]


EXAMPLES = [(f"{src}:{name}", name, value) for src, pairs in
            ((".env.example", env_example()), ("secret.yaml", secret_yaml()))
            for name, value in pairs if value.strip()]


BASE = {"MODELARTS_AK": "AK-real-1", "MODELARTS_SK": "SK-real-1"}   # they go together


def load(name: str, value: str) -> Settings:
    return load_settings(_env_file=None, **{**BASE, name: value})


def is_default(name: str, value: str) -> bool:
    try:
        return getattr(load(name, value), name) == Settings.model_fields[name].default
    except ConfigError:
        return False


def test_both_files_have_examples():
    assert len([e for e in EXAMPLES if e[0].startswith("secret")]) >= 7
    assert len([e for e in EXAMPLES if e[0].startswith(".env")]) >= 30


@pytest.mark.parametrize(("where", "name", "value"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_every_example_value_is_a_default_a_sample_or_a_placeholder(where, name, value):
    if is_default(name, value):
        return
    if name in SAMPLES and SAMPLES[name] == value:
        assert not is_placeholder(value)
        return
    assert is_placeholder(value), f"{where}={value!r}: add it to PLACEHOLDERS or to SAMPLES"
    problems = load(name, value).named_problems(need_slack=False)
    named = [text for setting, text in problems if setting == name and "placeholder" in text]
    assert len(named) == 1, problems
    assert value not in named[0] or value.lower() == "replace_me"   # never the value itself


def test_every_listed_placeholder_is_shipped_in_one_of_the_files():
    shipped = {value.strip().lower() for _, _, value in EXAMPLES}
    assert PLACEHOLDERS <= shipped, f"stale entries: {sorted(PLACEHOLDERS - shipped)}"


def test_every_sample_is_still_shipped():
    assert {(n, v) for _, n, v in EXAMPLES} >= set(SAMPLES.items())


@pytest.mark.parametrize("value", ["REPLACE_ME", "xoxb-REPLACE_ME-too", "your-iam-user",
                                   " Your-Account-Name "])
def test_case_and_spaces_do_not_hide_a_placeholder(value):
    assert is_placeholder(value)
