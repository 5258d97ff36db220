"""On/off switches read from environment variables, one parser for all of them.

``1``/``true``/``yes``/``on`` and ``0``/``false``/``no``/``off`` (any case); unset is
the switch's default; anything else is a :class:`~slmstack.errors.ConfigError` that names
the variable, the value and what each setting means, never a silent default.
"""

from __future__ import annotations

import os

from slmstack.errors import ConfigError

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def env_switch(name: str, *, on_means: str, default: bool = True) -> bool:
    """Whether switch ``name`` is on.

    Args:
        name: the environment variable.
        on_means: what 1 does, for the error message (``"freeze"``).
        default: the value when the variable is unset.

    Raises:
        ConfigError: the variable holds something else.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    shown = f"1 ({on_means}, the default) or 0" if default else f"0 (the default) or 1 ({on_means})"
    raise ConfigError(f"{name}={value!r}: expected {shown}")


__all__ = ["env_switch"]
