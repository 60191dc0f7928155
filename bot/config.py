"""Kept so older imports work: the settings live in `bot.settings`, the log file in `bot.logs`."""
from .logs import RedactSecrets, _RedactSecrets, setup_logging  # noqa: F401
from .settings import *  # noqa: F401,F403
from .settings import Settings, SettingsError, secret_values  # noqa: F401
