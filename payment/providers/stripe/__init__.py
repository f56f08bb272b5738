"""The Stripe provider (``pp_stripe``), on the official ``stripe`` SDK (the ``stripe`` extra).

    pip install 'flowkit[stripe]'

    from payment.providers.stripe import StripeProvider

    provider = StripeProvider(api_key=os.environ["STRIPE_API_KEY"],
                              webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"])
    module = make_payment_module(url, providers=[SystemProvider(), provider])

Point ``api_base`` at a localstripe server (``python -m localstripe --port 8420``) to develop
without a Stripe account. Importing this package needs the SDK; importing `payment` does not.
"""

from payment.providers.stripe._amounts import (
    STRIPE_CURRENCIES,
    from_stripe_amount,
    stripe_exponent,
    to_stripe_amount,
)
from payment.providers.stripe._provider import (
    CaptureMethod,
    MissingWebhookSecret,
    StripeProvider,
    stripe_idempotency_key,
)

__all__ = [
    "STRIPE_CURRENCIES",
    "CaptureMethod",
    "MissingWebhookSecret",
    "StripeProvider",
    "from_stripe_amount",
    "stripe_exponent",
    "stripe_idempotency_key",
    "to_stripe_amount",
]
