import dataclasses

import pytest

from app.dialogue.acceptance import check_wording, objection
from app.dialogue.domain import ActionSpec, DomainError, load_domain
from app.dialogue.knowledge import Found, KnowledgeEntry
from app.dialogue.policy import ActionResult, Decision, already_failed, decide, grounded
from app.dialogue.state import DialogueState, EvidenceNote
from app.dialogue.tracker import TurnAnalysis, record_action

DOMAIN = load_domain()
QUIET = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=())


def state(**kwargs) -> DialogueState:
    return DialogueState(**kwargs)


def test_missing_required_slot_is_asked_for():
    decision = decide(state(intent="damaged_item", slots={"product": "lamp"}), QUIET, DOMAIN)
    assert decision.action == "ask_slot" and decision.requested_slot == "order_id"
    assert decision.draft == DOMAIN.slots["order_id"].prompt


def test_filled_intent_responds_with_its_facts():
    decision = decide(state(intent="damaged_item", slots={"product": "lamp", "order_id": "A7Q-4412"}), QUIET, DOMAIN)
    assert decision.action == "respond"
    assert "A7Q-4412" in decision.draft and "lamp" in decision.draft
    assert set(decision.required) == {"A7Q-4412", "lamp"}


def test_recall_states_the_asked_slot():
    asked = TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=("order_id",), filled=())
    decision = decide(state(intent="damaged_item", slots={"order_id": "A7Q-4412", "email": "a@b.co"}), asked, DOMAIN)
    assert decision.action == "recall"
    assert decision.draft == "Your order number is A7Q-4412."
    assert decision.required == ("A7Q-4412",)


def test_recall_of_an_unknown_slot_asks_for_it():
    asked = TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=("email",), filled=())
    decision = decide(state(intent="billing"), asked, DOMAIN)
    assert decision.action == "ask_slot" and decision.requested_slot == "email"


def test_handoff_turn_passes_on_and_later_turns_say_a_person_will_answer():
    handing = TurnAnalysis(act="human_agent", act_score=0.9, asked_slots=(), filled=(), handed_over=True)
    decision = decide(state(intent="human_agent", handed_off=True), handing, DOMAIN)
    assert decision.action == "handoff" and decision.draft == DOMAIN.handoff_response
    later = decide(state(intent="complaint", handed_off=True), QUIET, DOMAIN)
    assert later.action == "handoff" and later.draft == DOMAIN.handed_off_response


def test_handoff_that_did_not_reach_anyone_says_so():
    decision = decide(state(handed_off=True), QUIET, DOMAIN, result=ActionResult(ok=False))
    assert decision.draft == DOMAIN.handoff_failed_response


def test_details_without_an_intent_are_acknowledged():
    photo = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=("order_id",))
    decision = decide(state(slots={"order_id": "A7Q-4412"}), photo, DOMAIN)
    assert decision.action == "acknowledge" and decision.required == ("A7Q-4412",)
    assert "order number A7Q-4412" in decision.draft


def test_a_detail_the_task_does_not_need_is_noted_and_its_question_asked_again():
    """A receipt photo (order 4512) while a billing case waits for the email: noted, then the email asked for,
    not "how can I help you with it?" (2026-12-02)."""
    receipt = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=("order_id",))
    decision = decide(state(intent="billing", slots={"order_id": "4512"}), receipt, DOMAIN)
    assert decision.action == "acknowledge" and decision.required == ("4512",)
    assert decision.requested_slot == "email" and decision.draft.endswith(DOMAIN.slots["email"].prompt)
    assert grounded(decision.draft, decision, DOMAIN)
    done = decide(state(intent="billing", slots={"order_id": "4512", "email": "a@b.co"}), receipt, DOMAIN)
    assert done.requested_slot is None and done.draft.endswith("Is there anything else I can help you with?")


def test_a_question_for_a_detail_nobody_knows_is_answered_so_first():
    """"what's the tracking number?" after the order's answer got the same answer again, word for word (2026-12-02)."""
    asked = TurnAnalysis(act="order_status", act_score=0.6, asked_slots=("tracking_number",), filled=())
    decision = decide(state(intent="order_status", slots={"order_id": "4512"}), asked, DOMAIN)
    assert decision.action == "respond" and decision.unknown == ("tracking_number",)
    assert decision.draft.startswith("I can't see the tracking number from here, I'm afraid. ")
    assert grounded(decision.draft, decision, DOMAIN)
    known = decide(state(intent="order_status", slots={"order_id": "4512", "tracking_number": "1Z999AA10123456784"}),
                   asked, DOMAIN)
    assert known.unknown == () and "1Z999AA10123456784" in known.draft


def test_a_reply_names_the_detail_it_cannot_see_not_another():
    asked = TurnAnalysis(act="order_status", act_score=0.6, asked_slots=("expected_day",), filled=())
    decision = decide(state(intent="order_status", slots={"order_id": "4512"}), asked, DOMAIN)
    assert "expected day" in decision.required
    wrong = decision.draft.replace("expected day", "tracking number")  # the model wrote so once
    assert grounded(decision.draft, decision, DOMAIN) and not grounded(wrong, decision, DOMAIN)


def test_a_first_question_naming_a_detail_is_no_follow_up():
    """"where's my delivery? order 4512" names the delivery (an expected_day mention) but asks for the status."""
    first = TurnAnalysis(act="order_status", act_score=0.7, asked_slots=("expected_day",), filled=("order_id",),
                         took_over=True)
    decision = decide(state(intent="order_status", slots={"order_id": "4512"}), first, DOMAIN)
    assert decision.unknown == () and not decision.draft.startswith("I can't see")


def test_a_turn_giving_its_tasks_details_is_that_task_not_a_knowledge_answer():
    """"where's my parcel? order 7731" got the entry for a parcel marked delivered but not found (2026-12-02)."""
    missing_parcel = KnowledgeEntry(title="Parcel marked delivered but not here", answer="Check with neighbours.")
    given = TurnAnalysis(act="order_status", act_score=0.64, asked_slots=(), filled=("order_id",))
    decision = decide(state(intent="order_status", slots={"order_id": "7731"}), given, DOMAIN,
                      found=Found(missing_parcel, 0.7))
    assert decision.action == "respond" and "7731" in decision.draft
    asked = TurnAnalysis(act="order_status", act_score=0.64, asked_slots=(), filled=())
    assert decide(state(intent="order_status", slots={"order_id": "7731"}), asked, DOMAIN,
                  found=Found(missing_parcel, 0.7)).action == "answer"


def test_no_intent_falls_back():
    assert decide(state(), QUIET, DOMAIN).action == "fallback"


FACTS = Decision("recall", "Your order number is A7Q-4412.", {"order_id": "A7Q-4412"}, required=("A7Q-4412",))


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        ("Sure! Your order number is A7Q-4412.", True),
        ("your order number is a7q-4412", True),
        ("Your order number is 12345.", False),  # dropped the fact
        ("Your order is A7Q-4412, or maybe KX-90817.", False),  # invented another id
        ("", False),
        ("A7Q-4412 \x07\x00", False),
        ("A7Q-4412 I'm sorry. I'm sorry. I'm sorry. I'm sorry.", False),
        # Sent by SmolLM2 (2026-12-02): a sentence said again is a loop too, and the reply was cut in its third.
        ("Order A7Q-4412. Have a great day!\n\nI hope you're having a great week.\n\nI hope you're having a "
         "great week.\n\nI hope", False),
    ],
)
def test_grounded_checks_facts_inventions_and_garbage(reply, ok):
    assert grounded(reply, FACTS, DOMAIN) is ok


@pytest.mark.parametrize(
    ("prefix", "failed"),
    [
        ("I'm sorry for your loss, but", True),  # a condolence: no continuation makes it sendable
        ("I'm sorry for your loss", False),  # "loss" may still be "lossless": only finished words count
        ("Sure! I have emailed you the label and", True),  # an action claimed that did not run
        ("As an AI, I", True),
        ("Your order is KX-90817. It", True),  # an id the facts do not hold, in a finished sentence
        ("Your order is KX-90817", False),  # the sentence (and the id) may not be finished yet
        ("Your order is A7Q-4412. Anything", False),  # the known id
        ("Your order number is", False),
        ("I'm sorry. I'm sorry. I'm sorry. I'm sorry. I'm", True),  # one 4-gram over and over
        ("I hope you're well. I hope you're well. I", True),  # a sentence said again
    ],
)
def test_a_reply_is_given_up_as_soon_as_no_continuation_could_pass(prefix, failed):
    assert already_failed(prefix, FACTS, DOMAIN) is failed
    if failed:  # whatever followed, the whole reply would fail the fact check too
        assert not grounded(prefix + " Your order number is A7Q-4412.", FACTS, DOMAIN)


def test_grounded_ask_must_name_the_slot():
    decision = decide(state(intent="damaged_item", slots={"product": "lamp"}), QUIET, DOMAIN)
    assert grounded("Could you tell me your order number?", decision, DOMAIN)
    assert not grounded("How are you today?", decision, DOMAIN)
    assert not grounded("The order number is the order number.", decision, DOMAIN)  # names it, asks nothing


def test_grounded_unknown_question_must_keep_its_gist_not_just_name_a_person():
    decision = dataclasses.replace(decide(state(), QUIET, DOMAIN), action="unknown_question",
                                   draft="I don't know that one, I'm afraid. If you'd like, ask for a person and "
                                         "a member of our support team will answer it.",
                                   names_one_of=("person",))
    assert grounded("I'm afraid I don't know that one. Ask for a person and our support team will answer it.",
                    decision, DOMAIN)
    assert not grounded("This is a joke about a person who is afraid of something.", decision, DOMAIN)


def test_grounded_handoff_must_mention_a_person():
    decision = decide(state(handed_off=True), QUIET, DOMAIN)
    assert grounded("A member of our team will take it from here.", decision, DOMAIN)
    assert not grounded("Have a nice day.", decision, DOMAIN)


def test_categorical_values_are_written_as_words():
    decision = decide(state(intent="technical_support", slots={"product": "coffee_maker"}), QUIET, DOMAIN)
    assert "coffee maker" in decision.draft and "coffee_maker" not in decision.draft
    assert decision.required == ("coffee maker",)


ACTION_DOMAIN = dataclasses.replace(
    DOMAIN,
    intents={**DOMAIN.intents, "order_status": dataclasses.replace(
        DOMAIN.intents["order_status"], action="order_lookup",
        response="Order {order_id} is {order_status} and arrives {delivery_date}.")},
    actions={"order_lookup": ActionSpec("order_lookup", "http://127.0.0.1:9/", 1.0, 1,
                                        ("order_status", "delivery_date"))},
)
ASKED = state(intent="order_status", slots={"order_id": "A7Q-4412"}, turns=3)


def test_filled_intent_with_an_action_asks_for_the_call_first():
    decision = decide(ASKED, QUIET, ACTION_DOMAIN)
    assert decision.action == "call_action" and decision.call == "order_lookup"


def test_action_answer_is_stated_and_required():
    answered = ASKED.model_copy(deep=True)
    result = ActionResult(ok=True, slots={"order_status": "shipped", "delivery_date": "Friday"},
                          facts={"carrier": "DHL"})
    record_action(answered, ACTION_DOMAIN.actions["order_lookup"].provides, result.slots)
    assert answered.slot_sources["order_status"].modality == "action"
    decision = decide(answered, QUIET, ACTION_DOMAIN, result=result)
    assert decision.action == "respond" and decision.call is None
    assert decision.draft == "Order A7Q-4412 is shipped and arrives Friday. Carrier: DHL."
    assert set(decision.required) == {"A7Q-4412", "shipped", "Friday", "DHL"}
    assert grounded(decision.draft, decision, ACTION_DOMAIN)
    assert not grounded("Order A7Q-4412 is shipped and arrives Friday.", decision, ACTION_DOMAIN)  # dropped DHL


def test_backend_down_gives_the_unavailable_reply():
    decision = decide(ASKED, QUIET, ACTION_DOMAIN, result=ActionResult(ok=False))
    assert decision.action == "action_unavailable" and decision.draft == ACTION_DOMAIN.action_failed_response
    assert grounded(decision.draft, decision, ACTION_DOMAIN)
    assert not grounded("Your order has shipped.", decision, ACTION_DOMAIN)


def test_a_failed_or_new_call_drops_what_an_earlier_one_provided():
    answered = ASKED.model_copy(deep=True)
    record_action(answered, ("order_status", "delivery_date"), {"order_status": "shipped", "delivery_date": "Fri"})
    record_action(answered, ("order_status", "delivery_date"), {})
    assert answered.slots == {"order_id": "A7Q-4412"} and set(answered.slot_sources) == set()


# Knowledge-base answers (app/dialogue/knowledge.py finds the entry; these check what the policy says with it).
PRINTER = KnowledgeEntry(title="printer error E-203: the printer is offline",
                         answer="E-203 means the printer is offline: check the cable and restart it.", codes=("E-203",))
REFUNDS = KnowledgeEntry(title="Refund times", answer="Refunds take 5 to 7 business days.")
ASKING = TurnAnalysis(act="ask_knowledge", act_score=0.9, asked_slots=(), filled=())


def test_a_code_on_this_turns_photo_is_answered_from_its_entry():
    found = Found(PRINTER, 1.0, code="E-203", seen_in="image", current=True)
    photographed = state(turns=1)
    photographed.evidence.append(EvidenceNote(turn=1, modality="image", text="ERROR E-203"))
    decision = decide(photographed, QUIET, DOMAIN, found=found)
    assert decision.action == "answer"
    assert decision.draft == "The photo shows error E-203. E-203 means the printer is offline: check the cable and restart it."
    assert decision.required == (PRINTER.answer,)
    assert grounded(decision.draft, decision, DOMAIN)
    assert not grounded("E-203 means the printer is out of ink.", decision, DOMAIN)  # a fix the entry never gave


def test_an_error_without_its_code_is_asked_for_its_code():
    decision = decide(state(turns=1), ASKING, DOMAIN, found=Found(None, 0.67, code_untold=True))
    assert decision.action == "ask_slot" and decision.requested_slot == "error_code"
    assert decision.draft == DOMAIN.slots["error_code"].prompt and "E-203" not in decision.draft


def test_a_knowledge_question_is_answered_and_the_task_in_progress_goes_on():
    mid_task = state(intent="damaged_item", slots={"product": "lamp"})
    decision = decide(mid_task, ASKING, DOMAIN, found=Found(REFUNDS, 0.9))
    assert decision.action == "answer" and decision.requested_slot == "order_id"
    assert decision.draft == f"{REFUNDS.answer} {DOMAIN.slots['order_id'].prompt}"


def test_an_entry_that_fits_better_than_the_intent_answers_it():
    refund_asked = TurnAnalysis(act="refund_request", act_score=0.77, asked_slots=(), filled=())
    assert decide(state(intent="refund_request"), refund_asked, DOMAIN, found=Found(REFUNDS, 0.87)).action == "answer"
    wants_refund = TurnAnalysis(act="refund_request", act_score=0.92, asked_slots=(), filled=())
    assert decide(state(intent="refund_request"), wants_refund, DOMAIN, found=Found(REFUNDS, 0.72)).action == "ask_slot"


def test_a_question_without_an_entry_is_not_known_and_a_person_is_offered():
    decision = decide(state(), ASKING, DOMAIN)
    assert decision.action == "unknown_question" and decision.draft == DOMAIN.intents["ask_knowledge"].response
    assert "don't know" in decision.draft and grounded(decision.draft, decision, DOMAIN)
    assert not grounded("Yes, we sell gift cards.", decision, DOMAIN)  # no offer of a person
    unknown_code = decide(state(), ASKING, DOMAIN, found=Found(None, 0.0, unknown_code="E-999"))
    assert unknown_code.draft.startswith("E-999 isn't in my notes.") and unknown_code.required == ("E-999",)
    assert not grounded(decision.draft, unknown_code, DOMAIN)  # "I don't know that one" without saying which


def test_off_topic_gets_what_parley_can_help_with():
    off = TurnAnalysis(act="off_topic", act_score=0.7, asked_slots=(), filled=())
    decision = decide(state(), off, DOMAIN)
    assert decision.action == "off_topic" and "orders" in decision.draft and "refunds" in decision.draft
    assert decide(state(intent="billing"), off, DOMAIN).requested_slot == "email"  # the open task is not dropped


def test_what_the_photo_shows_is_stated_as_evidence():
    shipped = state(intent="order_status", slots={"order_id": "A7Q-4412"}, turns=2, evidence=[
        EvidenceNote(turn=2, modality="image", text="Order A7Q-4412 Carrier: UPS Expected delivery: Friday")])
    decision = decide(shipped, QUIET, DOMAIN)
    assert decision.action == "respond"
    assert decision.draft.endswith("The photo shows it is expected Friday and the carrier is UPS.")
    assert {"A7Q-4412", "Friday", "UPS"} <= set(decision.required)
    earlier = shipped.model_copy(update={"turns": 3})  # an earlier turn's photo: not repeated every turn
    assert "Friday" not in decide(earlier, QUIET, DOMAIN).draft


# Issue 15: replies a customer must never read, whatever wrote them.
LAMP = decide(state(intent="damaged_item", slots={"product": "lamp"}), QUIET, DOMAIN)  # asks for the order number


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("I'm sorry for your loss, but I'm unable to assist with your order. Please provide the correct product "
         "number for your lamp.", "refuses"),
        ("I'm sorry for any confusion, but I'm unable to assist with your order. Please find the order number E-203.",
         "refuses"),
        ("Hello there, parley. I'm Parley, your support assistant.", "says the assistant's name"),
        ("I'm so sorry for your loss. What is your order number?", "offers condolences"),
        ("I've logged a damage report. What is your order number?", "claims an action"),
        ("I've emailed you a return label. What is your order number?", "claims an action"),
        ("A prepaid return label is on its way to your inbox. What's your order number?", "claims an action"),
        ("Your refund has been processed. What is your order number?", "claims an action"),
        ("I'm connecting you with a colleague now. What is your order number?", "claims an action"),
        ("Your ticket number is 55. What is your order number?", "claims an action"),
        ("You'll receive an email shortly. What is your order number?", "claims an action"),
        ("I can\u2019t help with that. What is your order number?", "refuses"),
        # Sent to customers by SmolLM2 as replies that asked for the order number (stories, 2026-12-01).
        ("I'm sorry for any confusion, but as a customer-service assistant, I'm designed to provide information "
         "about products and services. I'm not equipped to assist with orders. What is your order number?",
         "talks about its own limits"),
        ("I'm here to help with products. I'm not equipped to check your order for you. Your order number?",
         "talks about its own limits"),
        ("Sorry for the confusion! What is your order number?", "talks about its own limits"),
    ],
)
def test_grounded_rejects_claims_refusals_condolences_and_odd_names(reply, why):
    assert objection(reply, acted=False).startswith(why)
    assert not grounded(reply, LAMP, DOMAIN)


def test_a_fact_named_as_another_slot_or_said_to_be_new_when_it_is_not_is_not_sent():
    noted = Decision("acknowledge", "Thanks, I've noted your order number A7Q-4412 and your tracking number "
                     "1Z999AA10123456784.", {"order_id": "A7Q-4412", "tracking_number": "1Z999AA10123456784"},
                     required=("A7Q-4412", "1Z999AA10123456784"))
    assert grounded(noted.draft, noted, DOMAIN)
    mislabelled = noted.draft.removesuffix(".") + " and your expected day 1Z999AA10123456784."
    assert not grounded(mislabelled, noted, DOMAIN)
    assert grounded(noted.draft + " The tracking number reads 1Z999AA10123456784.", noted, DOMAIN)
    twice = noted.draft.replace("and your", "and your order number A7Q-4412 and your")
    assert not grounded(twice, noted, DOMAIN)  # "your order number A7Q-4412 and your order number A7Q-4412"
    # The customer corrected the order number; the fused model acknowledged a change of the tracking number.
    corrected = Decision("respond", "Got it: your order number is now A7Q-4412. Thanks, I have order A7Q-4412.",
                         noted.facts, required=("A7Q-4412",))
    assert grounded(corrected.draft, corrected, DOMAIN)
    assert not grounded("Got it: your tracking number is now 1Z999AA10123456784. Thanks, I have order A7Q-4412.",
                        corrected, DOMAIN)


@pytest.mark.parametrize(
    "reply",
    [
        "Hi! I'm Parley, your support assistant. What is your order number?",
        "I'm sorry your lamp arrived damaged. What is your order number?",
        "Sorry for the trouble. Could you tell me your order number?",
        "I've noted that. What's the order number?",
        "Refunds go back to your card within 5 to 7 business days. What is your order number?",
        "I can't reach our order system right now. What is your order number?",
        "A member of our support team will take over; first, what is your order number?",
    ],
)
def test_grounded_lets_plain_helpful_replies_through(reply):
    assert objection(reply, acted=False) is None
    assert grounded(reply, LAMP, DOMAIN)


@pytest.mark.parametrize(
    ("reply", "media", "why"),
    [
        ("I can read order number 4512 on your photo. What is your order number?", {"audio"}, "cites a photo"),
        ("The photo you sent shows order 4512. What is your order number?", set(), "cites a photo"),
        ("From the picture, it's a lamp. What is your order number?", {"audio"}, "cites a photo"),
        ("I heard order 4512. What is your order number?", {"image"}, "cites a voice message"),
        ("Your voice message says lamp. What is your order number?", set(), "cites a voice message"),
    ],
)
def test_a_reply_cites_only_what_the_customer_sent(reply, media, why):
    """Sent for a voice turn by the trained model (2026-12-02): "I can read order number 4512 on your photo"."""
    assert objection(reply, acted=False, media=media).startswith(why)
    assert not grounded(reply, dataclasses.replace(LAMP, media=frozenset(media)), DOMAIN)
    assert objection(reply, acted=False, media={"image", "audio"}) is None


@pytest.mark.parametrize("reply", [
    "Could you send me a photo of the screen, or type the order number?", "Could you attach the photo?",
    "Please upload the photo of the label.", "Could you send us the photo?", "Please send over the screenshot.",
    "Once you've sent the photo, I'll take a look.", "It looks like the photo didn't come through.",
    "You can also send a voice message with the order number.",
])
def test_asking_for_a_photo_or_a_voice_message_cites_none(reply):
    assert objection(reply, acted=False, media=set()) is None


@pytest.mark.parametrize("reply", [
    "In the photograph, the order is 4512.", "Your pic shows order 4512.", "Going by the screenshot, it's E-203.",
    "In your clip you said 4512.", "I can hear order 4512 in your message.", "Thanks for the voice note: 4512.",
])
def test_other_words_for_a_photo_or_a_clip_are_citations_too(reply):
    assert objection(reply, acted=False, media=set()) is not None


def test_the_decision_knows_what_the_customer_sent():
    photographed = state(intent="damaged_item", slots={"product": "lamp"})
    photographed.evidence.append(EvidenceNote(turn=1, modality="image", text="LAMP"))
    assert decide(photographed, QUIET, DOMAIN).media == {"image"} and LAMP.media == frozenset()


def test_an_action_may_be_stated_as_done_only_when_its_webhook_answered():
    claimed = dataclasses.replace(ACTION_DOMAIN, intents={**ACTION_DOMAIN.intents, "order_status": dataclasses.replace(
        ACTION_DOMAIN.intents["order_status"], response="I've checked order {order_id}: it is {order_status}.")})
    answered = ASKED.model_copy(deep=True)
    result = ActionResult(ok=True, slots={"order_status": "shipped"})
    record_action(answered, ("order_status", "delivery_date"), result.slots)
    decision = decide(answered, QUIET, claimed, result=result)
    assert decision.acted and grounded(decision.draft, decision, claimed)
    assert not grounded(decision.draft, dataclasses.replace(decision, acted=False), claimed)


def test_the_default_domains_own_wording_passes_the_start_up_check():
    check_wording(DOMAIN)  # raises DomainError naming the first response a customer must not read


def test_a_domain_whose_wording_claims_what_no_webhook_does_fails_at_start_up():
    claims = dataclasses.replace(DOMAIN, intents={**DOMAIN.intents, "billing": dataclasses.replace(
        DOMAIN.intents["billing"], response="I've emailed {email} a copy of your invoice.")})
    with pytest.raises(DomainError, match="intent 'billing': the response claims an action that did not run"):
        check_wording(claims)
    check_wording(dataclasses.replace(claims, intents={**claims.intents, "billing": dataclasses.replace(
        claims.intents["billing"], action="order_lookup")}))  # bound to a webhook: it may say so
    with pytest.raises(DomainError, match="fallback_response: the response refuses"):
        check_wording(dataclasses.replace(DOMAIN, fallback_response="Sorry, I can't help with that."))


def test_a_reply_to_a_decision_that_pins_no_fact_must_still_say_what_the_draft_says():
    goodbye = decide(state(intent="goodbye"), QUIET, DOMAIN)
    assert not goodbye.required and not goodbye.names_one_of
    assert grounded("Thank you for contacting us, and have a great day!", goodbye, DOMAIN)
    # What a small model wrote in a real conversation: the previous answer again, and a "joke".
    assert not grounded("E-203 means the printer is offline: check the cable and restart it.", goodbye, DOMAIN)
    off = decide(state(), TurnAnalysis(act="off_topic", act_score=0.7, asked_slots=(), filled=()), DOMAIN)
    assert not grounded("A: \"What's the most important thing you can do to help me?\"", off, DOMAIN)
    assert grounded(off.draft, off, DOMAIN)


def test_a_reply_that_states_the_facts_must_still_say_what_the_draft_says():
    order = decide(state(intent="order_status", slots={"order_id": "ZT-3309"}), QUIET, DOMAIN)
    assert order.required == ("ZT-3309",) and grounded(order.draft, order, DOMAIN)
    # What SmolLM2 wrote in story runs: the fact alone, or the fact said back as if it were an answer.
    assert not grounded("ZT-3309", order, DOMAIN)
    assert not grounded("Your order number is ZT-3309.", order, DOMAIN)
    support = decide(state(intent="technical_support", slots={"product": "speaker"}), QUIET, DOMAIN)
    assert not grounded("The speaker is the speaker.", support, DOMAIN)


def test_a_response_that_offers_a_person_keeps_the_offer():
    complaint = decide(state(intent="complaint"), QUIET, DOMAIN)
    assert "person" in complaint.names_one_of and grounded(complaint.draft, complaint, DOMAIN)
    assert not grounded("I'm really sorry about your experience. Tell me what happened.", complaint, DOMAIN)
    assert not decide(state(intent="goodbye"), QUIET, DOMAIN).names_one_of  # it offers no one


def test_an_answer_that_outranks_the_task_this_turn_just_started_asks_nothing_for_that_task():
    payment = KnowledgeEntry(title="Payment methods", answer="We accept Visa, Mastercard and PayPal.")
    billing_now = TurnAnalysis(act="billing", act_score=0.6, asked_slots=(), filled=(), took_over=True)
    decision = decide(state(intent="billing"), billing_now, DOMAIN, found=Found(payment, 0.8))
    assert decision.action == "answer" and decision.requested_slot is None and decision.draft == payment.answer
    billing_before = dataclasses.replace(billing_now, took_over=False)  # a billing case already open goes on
    assert decide(state(intent="billing"), billing_before, DOMAIN, found=Found(payment, 0.8)).requested_slot == "email"


def test_a_reply_that_keeps_the_facts_but_not_what_the_policy_decided_to_say_is_refused():
    decision = decide(state(intent="order_status", slots={"order_id": "4513"}), QUIET, DOMAIN)
    assert grounded(decision.draft, decision, DOMAIN)
    # Sent once after "Sorry, I gave you the wrong number. It is 4513.": the customer's words, as if the
    # assistant had erred, and nothing of what the policy said about the order.
    assert not grounded("Sorry, I gave you the wrong number. The correct number is 4513.", decision, DOMAIN)


def test_an_intent_states_the_slots_it_lists_when_they_are_known():
    shipped = decide(state(intent="order_status", slots={"order_id": "5520-Z", "expected_day": "Friday"}), QUIET,
                     DOMAIN)
    assert "5520-Z" in shipped.draft and "Friday" in shipped.draft and "Friday" in shipped.required
    assert not grounded(shipped.draft.replace("Friday", "soon"), shipped, DOMAIN)
    plain = decide(state(intent="order_status", slots={"order_id": "5520-Z"}), QUIET, DOMAIN)
    assert "Friday" not in plain.draft and grounded(plain.draft, plain, DOMAIN)
