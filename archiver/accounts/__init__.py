"""The provider accounts a deployment serves: the registry (a TOML file, or the single-account
environment), validated whole and read again when it changes."""

from archiver.accounts.loading import (
    AccountsFileError,
    load_registry,
    registry_from_file,
    registry_from_settings,
)
from archiver.accounts.registry import (
    ANY_ACCOUNT,
    Account,
    BandwidthAccount,
    Registry,
    Secret,
    StorageTarget,
    TwilioAccount,
)
from archiver.accounts.watch import Accounts

__all__ = [
    "ANY_ACCOUNT",
    "Account",
    "Accounts",
    "AccountsFileError",
    "BandwidthAccount",
    "Registry",
    "Secret",
    "StorageTarget",
    "TwilioAccount",
    "load_registry",
    "registry_from_file",
    "registry_from_settings",
]
