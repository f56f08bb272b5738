"""The system provider: manual or offline payments that are authorized as soon as asked."""

from __future__ import annotations

from datetime import timedelta

from payment.domain import ProviderStatus
from payment.providers.base import ProviderInput, ProviderOutput, Webhook, WebhookAction

__all__ = ["SystemProvider"]


class SystemProvider:
    """``pp_system_default``: authorizes everything and moves no real money.

    For cash on delivery, bank transfers and other payments settled outside the shop. It
    sends no webhooks: every webhook is answered ``not_supported``.
    """

    id = "pp_system_default"
    authorization_window: timedelta | None = None
    """Never lapses: nothing is held at a gateway, so there is nothing to release."""

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Accept the session; its data is kept as given."""
        return ProviderOutput(ProviderStatus.PENDING, payment.data)

    def update_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Accept the change."""
        return ProviderOutput(ProviderStatus.PENDING, payment.data)

    def delete_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Nothing to discard."""
        return ProviderOutput(ProviderStatus.CANCELED, payment.data)

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Authorize."""
        return ProviderOutput(ProviderStatus.AUTHORIZED, payment.data)

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Record the capture (the money is collected outside)."""
        return ProviderOutput(ProviderStatus.CAPTURED, payment.data)

    def refund_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Record the refund (the money is returned outside)."""
        return ProviderOutput(ProviderStatus.CAPTURED, payment.data)

    def cancel_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Void."""
        return ProviderOutput(ProviderStatus.CANCELED, payment.data)

    def retrieve_payment(self, payment: ProviderInput) -> ProviderOutput:
        """The payment is whatever the module says; report it authorized."""
        return ProviderOutput(ProviderStatus.AUTHORIZED, payment.data)

    def get_payment_status(self, payment: ProviderInput) -> ProviderOutput:
        """Always authorized."""
        return ProviderOutput(ProviderStatus.AUTHORIZED, payment.data)

    def get_webhook_action_and_data(self, webhook: Webhook) -> WebhookAction:
        """The system provider sends no webhooks."""
        return WebhookAction("not_supported")
