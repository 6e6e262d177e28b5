"""A pretend database: slow, deterministic loaders of users, providers and accounts."""

from __future__ import annotations

import time

__all__ = ["LOAD_DELAY", "load_accounts", "load_provider", "load_user"]

#: Seconds each load takes, so that a cache hit is visibly faster than a miss.
LOAD_DELAY = 0.03

_NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances"]
_PROVIDERS = ["Acme Health", "Globex Clinics", "Initech Care", "Umbrella Labs"]


def load_user(user_id: int) -> dict[str, object]:
    """Return the user record `user_id` (slowly)."""
    time.sleep(LOAD_DELAY)
    name = _NAMES[user_id % len(_NAMES)]
    return {
        "id": user_id,
        "name": f"{name} #{user_id}",
        "email": f"{name.lower()}{user_id}@example.com",
        "provider_id": user_id % len(_PROVIDERS) + 1,
    }


def load_provider(provider_id: int) -> dict[str, object]:
    """Return the provider record `provider_id` (slowly)."""
    time.sleep(LOAD_DELAY)
    return {
        "id": provider_id,
        "name": _PROVIDERS[(provider_id - 1) % len(_PROVIDERS)],
        "city": ["Lyon", "Oslo", "Porto", "Kyoto"][provider_id % 4],
    }


def load_accounts(user_id: int) -> list[dict[str, object]]:
    """Return the accounts of user `user_id` (slowly)."""
    time.sleep(LOAD_DELAY)
    return [
        {"number": f"{user_id:04d}-{n:02d}", "balance": (user_id * 37 + n * 101) % 5000}
        for n in range(1, user_id % 3 + 2)
    ]
