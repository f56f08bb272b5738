"""Payment providers: the protocol and its records, the system provider, the test gateway.

Providers are handed to the module by the composition root (`payment.bootstrap`); nothing here
registers itself anywhere.
"""

from payment.providers.base import (
    AccountHolderInput,
    AccountHolderOutput,
    PaymentAction,
    PaymentProvider,
    ProviderCall,
    ProviderContext,
    ProviderCustomer,
    ProviderInput,
    ProviderOutput,
    SupportsAccountHolders,
    Webhook,
    WebhookAction,
    authorization_window,
)
from payment.providers.system import SystemProvider
from payment.providers.test import LedgerEntry, TestProvider

__all__ = [
    "AccountHolderInput",
    "AccountHolderOutput",
    "LedgerEntry",
    "PaymentAction",
    "PaymentProvider",
    "ProviderCall",
    "ProviderContext",
    "ProviderCustomer",
    "ProviderInput",
    "ProviderOutput",
    "SupportsAccountHolders",
    "SystemProvider",
    "TestProvider",
    "Webhook",
    "WebhookAction",
    "authorization_window",
]
