"""Every phrasing of the response bank, composed for real decisions of the policy, passes the checks a
generated reply meets when served: a bad phrasing fails here, not in front of a customer."""

import random
from collections.abc import Sequence

import pytest

from app.dialogue.acceptance import check_wording, objection
from app.dialogue.decision_text import describe, fill
from app.dialogue.domain import load_domain
from app.dialogue.knowledge import Found, KnowledgeEntry
from app.dialogue.policy import ActionResult, decide, grounded
from app.dialogue.response_bank import MIN_PHRASINGS, load_bank
from app.dialogue.state import DialogueState, EvidenceNote, SlotSource
from app.dialogue.tracker import TurnAnalysis

DOMAIN = load_domain()
BANK = load_bank(DOMAIN)
QUIET = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=())
VALUES = {"order_id": "A7Q-4412", "product": "coffee_maker", "email": "jane@example.com", "phone": "415 555 0100",
          "amount": "$37.50", "error_code": "E-203", "tracking_number": "1Z999AA10123456784",
          "expected_day": "Friday", "issue": "damaged"}
ENTRY = KnowledgeEntry(title="Error E-203", codes=("E-203",), answer="E-203 means the printer is offline: restart it.")
MAY_CLAIM = {"acted", "handoff_acted"}  # said only when a webhook answered in this turn


class Nth(random.Random):
    """Picks the n-th phrasing of every list (wrapping), so a loop over n says each phrasing once."""

    def __init__(self, n: int) -> None:
        super().__init__(0)
        self.n = n

    def choice(self, seq: Sequence) -> object:  # type: ignore[override]
        return seq[self.n % len(seq)]


def filled(intent: str | None, *names: str, **changes) -> DialogueState:
    return DialogueState(intent=intent, slots={name: VALUES[name] for name in names}, turns=2, **changes)


def scenarios():
    """(name, state, analysis, decide's keyword arguments, corrected) covering every act of the policy."""
    for name, spec in DOMAIN.intents.items():
        if not spec.keeps_active:
            yield f"respond.{name}", filled(name, *spec.required_slots), QUIET, {}, ()
            yield f"respond.{name}.negative", filled(name, *spec.required_slots, sentiment="negative"), QUIET, {}, ()
    yield "respond.stated", filled("order_status", "order_id", "expected_day", "tracking_number"), QUIET, {}, ()
    yield "respond.acted", filled("order_status", "order_id"), QUIET, {"result": ActionResult(ok=True, facts={
        "status": "shipped", "eta_day": "Monday"})}, ()
    for slot in DOMAIN.slots:
        asked = TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=(slot,), filled=())
        yield f"ask_slot.{slot}", filled(None, last_act="ask_recall"), asked, {}, ()
    yield "ask_slot.task", filled("damaged_item", "product"), QUIET, {}, ()
    tracking = TurnAnalysis(act="order_status", act_score=0.6, asked_slots=("tracking_number",), filled=())
    yield "respond.unknown_fact", filled("order_status", "order_id"), tracking, {}, ()
    receipt = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=("order_id",))
    yield "acknowledge.then_ask", filled("billing", "order_id"), receipt, {}, ()
    yield "acknowledge.anything_else", filled("billing", "order_id", "email"), receipt, {}, ()
    photo = SlotSource(modality="image", turn=2, confidence=0.9)
    voice = SlotSource(modality="audio", turn=2, confidence=0.8)
    yield "sources.image", filled("damaged_item", "order_id", slot_sources={"order_id": photo}), QUIET, {}, ()
    yield "sources.audio", filled("order_status", "order_id", slot_sources={"order_id": voice}), QUIET, {}, ()
    shown = [EvidenceNote(turn=2, modality="image", text="Estimated delivery: Friday Carrier: UPS")]
    yield "shown", filled("return_item", "order_id", evidence=shown), QUIET, {}, ()
    code = Found(entry=ENTRY, score=1.0, code="E-203", seen_in="text", current=True)
    yield "answer", filled(None), QUIET, {"found": code}, ()
    screen = [EvidenceNote(turn=2, modality="image", text="ERROR E-203")]
    yield "answer.photo", filled(None, evidence=screen), QUIET, {"found": Found(entry=ENTRY, score=1.0, code="E-203", seen_in="image",
                                                                current=True)}, ()
    yield "answer.then_ask", filled("damaged_item", "product"), QUIET, {"found": code}, ()
    knowledge = TurnAnalysis(act="ask_knowledge", act_score=0.8, asked_slots=(), filled=())
    yield "unknown_question", filled(None), knowledge, {}, ()
    yield "unknown_code", filled(None), QUIET, {"found": Found(entry=None, score=0.0, unknown_code="X-999")}, ()
    off = TurnAnalysis(act="off_topic", act_score=0.8, asked_slots=(), filled=())
    yield "off_topic", filled(None), off, {}, ()
    yield "off_topic.then_ask", filled("return_item", "order_id"), off, {}, ()
    not_fixed = TurnAnalysis(act="not_fixed", act_score=0.8, asked_slots=(), filled=())
    yield "not_fixed", filled("technical_support", "product"), not_fixed, {}, ()
    yield "fallback", filled(None), QUIET, {}, ()
    noted = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=("order_id", "email"))
    yield "acknowledge", filled(None, "order_id", "email"), noted, {}, ()
    yield "acknowledge_photo", filled(None, evidence=shown), QUIET, {}, ()
    recall = TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=("order_id", "product"), filled=())
    yield "recall", filled("damaged_item", "order_id", "product"), recall, {}, ()
    yield "recall_nothing", filled(None), TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=(), filled=()), {}, ()
    handing = TurnAnalysis(act="human_agent", act_score=0.9, asked_slots=(), filled=(), handed_over=True)
    yield "handoff", filled("human_agent", handed_off=True), handing, {}, ()
    yield "handoff_acted", filled("human_agent", handed_off=True), handing, {"result": ActionResult(ok=True)}, ()
    yield "handed_off", filled("complaint", handed_off=True), QUIET, {}, ()
    yield "handoff_failed", filled(None, handed_off=True), QUIET, {"result": ActionResult(ok=False)}, ()
    yield "action_unavailable", filled("order_status", "order_id"), QUIET, {"result": ActionResult(ok=False)}, ()
    corrected = TurnAnalysis(act="inform", act_score=0.8, asked_slots=(), filled=("order_id",), corrected=("order_id",))
    yield "corrections", filled("refund_request", "order_id"), corrected, {}, ("order_id",)


SCENARIOS = list(scenarios())


@pytest.mark.parametrize(("name", "state", "analysis", "given", "corrected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_every_phrasing_composed_for_a_real_decision_is_grounded(name, state, analysis, given, corrected):
    decision = decide(state, analysis, DOMAIN, **given)
    described = describe(decision, state, DOMAIN, corrected=corrected)
    for n in range(MIN_PHRASINGS):
        reply = BANK.compose(decision, state, DOMAIN, described, corrected=corrected, rng=Nth(n))
        said = fill(reply, described.values)
        assert said is not None, reply
        assert grounded(said, decision, DOMAIN), f"{name}: {said!r} for the draft {decision.draft!r}"


def test_the_scenarios_reach_every_act():
    acts = {describe(decide(s, a, DOMAIN, **g), s, DOMAIN).text.split()[0] for _, s, a, g, _ in SCENARIOS}
    assert acts >= {f"act={act}" for act in ("respond", "ask_slot", "answer", "unknown_question", "off_topic",
                                              "not_fixed", "fallback", "acknowledge", "recall", "handoff",
                                              "handed_off", "handoff_failed", "action_unavailable")}


def test_no_phrasing_claims_an_action_unless_a_webhook_answered():
    for key, texts in BANK.phrasings().items():
        for text in texts:
            why = objection(text, acted=key in MAY_CLAIM)
            assert why is None, f"{key}: {text!r} {why}"


def test_the_domains_own_wording_claims_nothing_that_did_not_run():
    check_wording(DOMAIN)


def test_phrasings_vary():
    for key, texts in BANK.phrasings().items():
        assert len(set(texts)) >= MIN_PHRASINGS, key


def test_a_code_read_off_this_turns_photo_is_cited_once():
    """The photo's code is the answer's lead ("The photo shows error [code]. ..."): no second sentence about the
    same photo before it ("The photo you sent shows error code E-203. Your photo shows error E-203." was served)."""
    photo = SlotSource(modality="image", turn=2, confidence=0.9)
    state = filled("technical_support", "error_code", slot_sources={"error_code": photo},
                   evidence=[EvidenceNote(turn=2, modality="image", text="ERROR E-203")])
    decision = decide(state, QUIET, DOMAIN, found=Found(entry=ENTRY, score=1.0, code="E-203", seen_in="image",
                                                          current=True))
    described = describe(decision, state, DOMAIN)
    assert described.sources == {"error_code": "image"}
    for n in range(MIN_PHRASINGS):
        said = fill(BANK.compose(decision, state, DOMAIN, described, rng=Nth(n)), described.values)
        assert said is not None and said.count("E-203") == 2, said  # the lead and the entry's answer


def test_an_unknown_fact_is_said_first_and_an_acknowledgement_asks_only_the_tasks_question():
    tracking = TurnAnalysis(act="order_status", act_score=0.6, asked_slots=("tracking_number",), filled=())
    receipt = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=("order_id",))
    for state, analysis, first, last in (
            (filled("order_status", "order_id"), tracking, BANK.acts["unknown_fact"], BANK.respond["order_status"]),
            (filled("billing", "order_id"), receipt, BANK.acts["acknowledge"], BANK.ask_slot["email"])):
        decision = decide(state, analysis, DOMAIN)
        described = describe(decision, state, DOMAIN)
        for n in range(MIN_PHRASINGS):
            reply = BANK.compose(decision, state, DOMAIN, described, rng=Nth(n))
            assert reply.startswith(first[n].split("{")[0]) and reply.endswith(last[n]), reply
    assert "unknown: tracking_number" in describe(decide(filled("order_status", "order_id"), tracking, DOMAIN),
                                                  filled("order_status", "order_id"), DOMAIN).text
