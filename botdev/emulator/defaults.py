"""The emulator's default credentials. None of them is a secret: they only open the emulator."""

EMULATOR_PROJECT_ID = "0123456789abcdef0123456789abcdef"
EMULATOR_PROJECT_NAME = "cn-north-4"  # the IAM project scope (set MODELARTS_PROJECT_NAME to it)
EMULATOR_AK = "EMULATORAK"
EMULATOR_SK = "emulator-sk-not-a-secret"  # noqa: S105
EMULATOR_USERNAME = "emulator-user"
EMULATOR_PASSWORD = "emulator-password-not-a-secret"  # noqa: S105
EMULATOR_DOMAIN = "emulator-account"
