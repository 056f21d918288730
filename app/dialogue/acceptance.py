"""What no reply may say, whoever wrote it: an action as done when none ran, a refusal, talk of its own
limits, a condolence, a photo or voice message the customer never sent, the assistant's own name said to the
customer.

`grounded` in policy.py runs this on every decoder's reply (a reply it rejects is replaced by the
policy's wording) and the tests run it on the policy's own wording too.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from app.dialogue.domain import Domain, DomainError

ASSISTANT_NAME = "Parley"

# Actions a customer could believe were carried out: a ticket, an email, a refund...
_DONE = (
    r"logged|opened|filed|raised|created|submitted|sent|e-?mailed|texted|messaged|started|processed|issued|"
    r"refunded|cancell?ed|booked|scheduled|arranged|escalated|forwarded|passed|flagged|recorded|reported|"
    r"registered|initiated|requested|ordered|shipped|dispatched|updated|changed|reset|credited|approved|placed|"
    r"notified|contacted|informed|looked up|checked|tracked|transferred|connected|set up|reached out"
)
_DOING = (
    r"connecting|transferring|passing|sending|e-?mailing|escalating|forwarding|processing|issuing|refunding|"
    r"cancell?ing|logging|opening|filing|creating|submitting|booking|scheduling|arranging|checking|looking up"
)
_PASSIVE = (
    r"sent|e-?mailed|logged|opened|filed|created|submitted|processed|issued|refunded|cancell?ed|escalated|"
    r"forwarded|scheduled|booked|arranged|approved|credited|notified|dispatched|flagged|recorded|reported"
)
_MESSAGES = r"email|e-mail|label|ticket|report|confirmation|refund|replacement|technician|courier|voucher|text|sms"
_NOTICES = r"email|e-mail|text|sms|call|label|confirmation|ticket"  # "you'll get a refund" is a policy, not a claim
ACTION_CLAIMS = (
    re.compile(rf"\b(?:i|we)(?:'ve| have)\s+(?:just |now |already |also )?(?:{_DONE})\b", re.I),
    re.compile(rf"\b(?:i|we)(?:'m| am|'re| are)\s+(?:now |just )?(?:{_DOING})\b", re.I),
    re.compile(rf"\b(?:has|have)\s+(?:now |already |just )?been\s+(?:{_PASSIVE})\b", re.I),
    re.compile(rf"\b(?:{_MESSAGES})\b[^.!?]{{0,30}}\bon (?:its|their) way\b", re.I),
    re.compile(rf"\byou(?:'ll| will)\s+(?:shortly |soon )?(?:receive|get)\s+(?:an?|the|your)\s+(?:\w+\s+)?(?:{_NOTICES})\b",
               re.I),
    re.compile(r"\b(?:ticket|case|claim|reference)\s+(?:number|no\.?|id|#)", re.I),
)
REFUSAL = re.compile(
    r"\b(?:i(?:'m| am)\s+(?:unable|not able)\s+to|i\s+(?:can't|cannot|can not|won't be able to|am not allowed to))"
    r"\s+(?:assist|help)\b|\bunable to assist\b|\bas an ai\b|\bi(?:'m| am) not (?:able|allowed|permitted) to "
    r"(?:do|provide|share|discuss) (?:that|this)\b|\bi (?:can't|cannot) (?:do|provide|discuss) (?:that|this)\b",
    re.I,
)
# The model talking about its own limits or role instead of the customer's request: SmolLM2 answered order
# questions with "as a customer-service assistant, I'm designed to provide information about products...
# I'm not equipped to assist with orders", and a reply that asks for the order number passed the slot check.
SELF_LIMITS = re.compile(
    r"\bnot (?:equipped|designed|programmed|trained|authori[sz]ed) to\b|"
    r"\bi(?:'m| am) (?:designed|programmed|trained) to\b|"
    r"\bas an? (?:ai|language model|virtual assistant|chatbot|customer[- ]service assistant|support assistant)\b|"
    r"\bsorry for (?:any|the) confusion\b",
    re.I,
)
CONDOLENCE = re.compile(
    r"\bsorry for your loss\b|\bcondolences\b|\bdeepest sympath|\bsorry to hear (?:about|of) your loss\b|"
    r"\bpassed away\b|\brest in peace\b",
    re.I,
)
# Where a reply says a fact came from: only from a photo or a voice clip the customer sent. The model told a
# caller "I can read order number 4512 on your photo". Asking for one ("send me a photo of the screen") is fine.
_PHOTO = r"(?:photo(?:graph)?|picture|image|screenshot|pic)s?"
_VOICE = r"(?:voice\s+(?:message|note|clip)|recording|audio(?:\s+clip)?|clip)s?"
_THE = r"(?:your|the|this|that)"
CITES = {  # saying what it showed, not asking for one ("could you attach the photo?")
    "image": re.compile(rf"\b{_THE}\s+{_PHOTO}\s+(?:you\s+sent\s+)?(?:shows?|says|reads|has)\b|"
                        rf"\b(?:in|on|from|going\s+by|according\s+to)\s+{_THE}\s+{_PHOTO}\b|"
                        rf"\bthanks?\s+(?:you\s+)?for\s+(?:the|your|sending\s+the)\s+{_PHOTO}\b", re.I),
    "audio": re.compile(rf"\b{_THE}\s+{_VOICE}\s+(?:says|said)\b|"
                        rf"\b(?:in|from|going\s+by|according\s+to)\s+{_THE}\s+{_VOICE}\b|"
                        rf"\bthanks?\s+(?:you\s+)?for\s+(?:the|your)\s+{_VOICE}\b|\bi\s+(?:heard|caught|can\s+hear)\b",
                        re.I),
}
_NAME = re.compile(rf"\b{ASSISTANT_NAME}\b", re.I)
# The one way the reply may use the name: introducing itself ("I'm Parley, your support assistant").
_SELF_INTRODUCTION = re.compile(rf"\b(?:i'm|i am|this is|it's|my name is|called|named)\s+{ASSISTANT_NAME}\b", re.I)


def objection(reply: str, *, acted: bool, media: Collection[str] | None = None) -> str | None:
    """Why a customer must not read `reply`, or None when it may be sent.

    `acted`: a bound webhook (an action, the handoff) answered in this turn, so the reply may say
    it was done. `media`: what the customer has sent in the conversation besides text ("image", "audio"), so
    the reply may cite it; None when unknown (replies scored away from a conversation), and not checked."""
    text = reply.replace("\u2019", "'")  # curly apostrophes, as language models write them
    if not acted and any(claim.search(text) for claim in ACTION_CLAIMS):
        return "claims an action that did not run"
    if REFUSAL.search(text):
        return "refuses"
    if SELF_LIMITS.search(text):
        return "talks about its own limits instead of the request"
    if CONDOLENCE.search(text):
        return "offers condolences"
    for medium, cites in CITES.items():
        if media is not None and medium not in media and cites.search(text):
            return f"cites {'a photo' if medium == 'image' else 'a voice message'} the customer never sent"
    if _NAME.search(_SELF_INTRODUCTION.sub(" ", text)):
        return f"says the assistant's name ({ASSISTANT_NAME}) other than to introduce itself"
    return None


def check_wording(domain: Domain) -> None:
    """Fail at start-up on a domain whose own wording a customer must not read: a response that claims an
    action its intent binds no webhook for ("I've emailed you"), a refusal, a condolence."""
    texts = {f"intent '{name}'": (spec.response.format_map(_Placeholder()), spec.action is not None)
             for name, spec in domain.intents.items()}
    texts |= {key: (getattr(domain, key), False) for key in
              ("fallback_response", "handoff_response", "handed_off_response", "handoff_failed_response",
               "action_failed_response")}
    for where, (text, acted) in texts.items():
        if (why := objection(text, acted=acted)) is not None:
            raise DomainError(f"{domain.name}: {where}: the response {why}; bind the intent to an action webhook "
                              "that does it, or say what happens next or what the customer can do")


class _Placeholder(dict):
    def __missing__(self, key: str) -> str:
        return "x"
