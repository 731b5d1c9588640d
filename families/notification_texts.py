"""The texts of the notification family's templates, in English and French, and their rendering
(pure: ``string.Template`` texts, ``${name}`` placeholders).

cronbus renders and sends the result: the notification service gets a finished subject and body,
and what it sent is what a test (or a support person) can read back. A variable a job does not
give takes the template's default (``${name}`` in a welcome is "there" / "à vous"), so a
template never goes out with a placeholder in it; variables no template names are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Literal

Language = Literal["en", "fr"]
EmailTemplate = Literal["welcome", "email-verification", "password-reset", "order-status",
                        "payment-confirmation", "review-reminder", "job-outcome"]
PushTemplate = Literal["order-status", "new-message", "payment-confirmation", "review-request",
                       "promotional", "job-outcome"]
Variables = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class Text:
    subject: str  # an email's subject, a push's title
    body: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


# per template: per language its text; and the defaults of its variables, per language
EMAILS: dict[str, dict[str, Text]] = {
    "welcome": {
        "en": Text("Welcome, ${name}!", "Hi ${name}, your account is ready. Welcome aboard."),
        "fr": Text("Bienvenue, ${name} !", "Bonjour ${name}, votre compte est prêt. Bienvenue."),
    },
    "email-verification": {
        "en": Text("Verify your email address",
                   "Hi ${name}, confirm your address with this link: ${link}"),
        "fr": Text("Vérifiez votre adresse courriel",
                   "Bonjour ${name}, confirmez votre adresse avec ce lien : ${link}"),
    },
    "password-reset": {
        "en": Text("Reset your password",
                   "Hi ${name}, reset your password with this link: ${link}. "
                   "If you did not ask for it, ignore this email."),
        "fr": Text("Réinitialisez votre mot de passe",
                   "Bonjour ${name}, réinitialisez votre mot de passe avec ce lien : ${link}. "
                   "Si vous ne l'avez pas demandé, ignorez ce courriel."),
    },
    "order-status": {
        "en": Text("Order ${order_id}: ${status}",
                   "Hi ${name}, your order ${order_id} is now ${status}."),
        "fr": Text("Commande ${order_id} : ${status}",
                   "Bonjour ${name}, votre commande ${order_id} est maintenant : ${status}."),
    },
    "payment-confirmation": {
        "en": Text("Payment received: ${amount}",
                   "Hi ${name}, we received your payment of ${amount} for ${order_id}. Thank you."),
        "fr": Text("Paiement reçu : ${amount}",
                   "Bonjour ${name}, nous avons reçu votre paiement de ${amount} pour "
                   "${order_id}. Merci."),
    },
    "review-reminder": {
        "en": Text("How was ${service}?",
                   "Hi ${name}, tell others how ${service} went: leave a review."),
        "fr": Text("Comment s'est passé ${service} ?",
                   "Bonjour ${name}, dites aux autres comment s'est passé ${service} : "
                   "laissez un avis."),
    },
    "job-outcome": {
        "en": Text("${job} ${outcome}", "Hi ${name}, ${job} ${outcome}. ${detail}"),
        "fr": Text("${job} : ${outcome}", "Bonjour ${name}, ${job} : ${outcome}. ${detail}"),
    },
}

PUSHES: dict[str, dict[str, Text]] = {
    "order-status": {
        "en": Text("Order ${order_id}", "Your order is now ${status}."),
        "fr": Text("Commande ${order_id}", "Votre commande est maintenant : ${status}."),
    },
    "new-message": {
        "en": Text("New message", "${sender} sent you a message."),
        "fr": Text("Nouveau message", "${sender} vous a envoyé un message."),
    },
    "payment-confirmation": {
        "en": Text("Payment received", "We received your payment of ${amount}."),
        "fr": Text("Paiement reçu", "Nous avons reçu votre paiement de ${amount}."),
    },
    "review-request": {
        "en": Text("How was ${service}?", "Leave a review in a minute."),
        "fr": Text("Comment s'est passé ${service} ?", "Laissez un avis en une minute."),
    },
    "promotional": {
        "en": Text("${title}", "${message}"),
        "fr": Text("${title}", "${message}"),
    },
    "job-outcome": {
        "en": Text("${job} ${outcome}", "${detail}"),
        "fr": Text("${job} : ${outcome}", "${detail}"),
    },
}

DEFAULTS: dict[str, dict[str, str]] = {
    "en": {"name": "there", "link": "(see the app)", "order_id": "", "status": "updated",
           "amount": "", "service": "your service", "job": "Your job", "outcome": "finished",
           "detail": "", "sender": "Someone", "title": "", "message": ""},
    "fr": {"name": "à vous", "link": "(voir l'application)", "order_id": "",
           "status": "mise à jour", "amount": "", "service": "votre service",
           "job": "Votre tâche", "outcome": "terminée", "detail": "", "sender": "Quelqu'un",
           "title": "", "message": ""},
}


def _text_of(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render(texts: Mapping[str, Mapping[str, Text]], template: str, language: str,
           variables: Variables) -> Rendered:
    """A template's text in ``language`` with ``variables`` put in (defaults for the missing);
    an unknown template or language raises ``KeyError`` naming it."""
    try:
        text = texts[template][language]
    except KeyError:
        raise KeyError(f"no template {template!r} in {language!r}") from None
    values = {**DEFAULTS[language], **{k: _text_of(v) for k, v in variables.items()}}
    return Rendered(" ".join(Template(text.subject).safe_substitute(values).split()),
                    Template(text.body).safe_substitute(values).strip())


def render_email(template: str, language: str, variables: Variables) -> Rendered:
    return render(EMAILS, template, language, variables)


def render_push(template: str, language: str, variables: Variables) -> Rendered:
    return render(PUSHES, template, language, variables)
