from app.dialogue.decision_text import act_name, describe, fill, missing, placeholders
from app.dialogue.domain import load_domain
from app.dialogue.knowledge import Found, KnowledgeEntry
from app.dialogue.policy import ActionResult, decide
from app.dialogue.state import DialogueState, SlotSource
from app.dialogue.tracker import TurnAnalysis

DOMAIN = load_domain()
QUIET = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=())


def test_a_response_names_its_facts_and_never_their_values():
    state = DialogueState(intent="damaged_item", slots={"order_id": "A7Q-4412", "product": "coffee_maker"},
                          sentiment="negative")
    described = describe(decide(state, QUIET, DOMAIN), state, DOMAIN)
    assert described.text.startswith(
        "act=respond intent=damaged_item ask=none user=none acted=no sentiment=negative handoff=no")
    assert "A7Q-4412" not in described.text and "coffee" not in described.text
    assert set(described.required) == {"order_id", "product"}
    assert described.values == {"order_id": "A7Q-4412", "product": "coffee maker"}  # as the policy says it
    assert "say: order_id product" in described.text or "say: product order_id" in described.text


def test_a_typed_value_keeps_its_underscores():
    state = DialogueState(intent="billing", slots={"issue": "charged_twice", "email": "jo_smith@example.org"})
    described = describe(decide(state, QUIET, DOMAIN), state, DOMAIN)
    assert described.values["email"] == "jo_smith@example.org" and described.values["issue"] == "charged twice"


def test_a_slot_question_is_named_by_the_act_and_requires_no_placeholder():
    state = DialogueState(intent="damaged_item", slots={"product": "lamp"})
    described = describe(decide(state, QUIET, DOMAIN), state, DOMAIN)
    assert "act=ask_slot" in described.text and "ask=order_id" in described.text
    assert described.required == ()
    assert "know: product" in described.text


def test_a_fact_from_a_photo_is_marked_with_its_source():
    state = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"}, turns=2,
                          slot_sources={"order_id": SlotSource(modality="image", turn=2, confidence=0.9)})
    assert "evidence: order_id=image" in describe(decide(state, QUIET, DOMAIN), state, DOMAIN).text
    later = state.model_copy(update={"turns": 3})  # said when the photo came, not on every later turn
    assert "evidence" not in describe(decide(later, QUIET, DOMAIN), later, DOMAIN).text


def test_a_knowledge_answer_is_one_placeholder_said_word_for_word():
    entry = KnowledgeEntry(title="Error E-203", codes=("E-203",), answer="E-203 means the paper is jammed.")
    found = Found(entry=entry, score=0.9, code="E-203", seen_in="text", current=True)
    state = DialogueState()
    described = describe(decide(state, QUIET, DOMAIN, found=found), state, DOMAIN)
    assert described.required == ("answer",)
    assert described.values["answer"] == "E-203 means the paper is jammed."
    assert fill("Here's what that means: [answer]", described.values) == "Here's what that means: E-203 means " \
                                                                          "the paper is jammed."


def test_a_corrected_value_is_named_and_required():
    state = DialogueState(intent="order_status", slots={"order_id": "4513"})
    corrected = TurnAnalysis(act="inform", act_score=0.8, asked_slots=(), filled=("order_id",), corrected=("order_id",))
    described = describe(decide(state, corrected, DOMAIN), state, DOMAIN, corrected=("order_id",))
    assert "corrected: order_id" in described.text and described.required == ("order_id",)


def test_a_webhook_answer_is_stated_and_the_act_may_say_it_ran():
    state = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"})
    decision = decide(state, QUIET, DOMAIN, result=ActionResult(ok=True, facts={"status": "shipped"}))
    described = describe(decision, state, DOMAIN)
    assert "acted=yes" in described.text and "status" in described.required


def test_the_handoff_is_told_apart_by_its_moment():
    handing = TurnAnalysis(act="human_agent", act_score=0.9, asked_slots=(), filled=(), handed_over=True)
    state = DialogueState(handed_off=True)
    assert act_name(decide(state, handing, DOMAIN), DOMAIN) == "handoff"
    assert act_name(decide(state, QUIET, DOMAIN), DOMAIN) == "handed_off"
    assert act_name(decide(state, QUIET, DOMAIN, result=ActionResult(ok=False)), DOMAIN) == "handoff_failed"


def test_fill_refuses_a_placeholder_the_decision_lacks():
    assert fill("Order [order_id] is [status].", {"order_id": "4512"}) is None
    assert fill("Order [order_id], [order_id].", {"order_id": "4512"}) == "Order 4512, 4512."
    assert fill("No placeholders.", {}) == "No placeholders."


def test_missing_lists_required_placeholders_left_out():
    assert missing("Your [product] from order [order_id].", ("order_id", "product")) == []
    assert missing("Your [product].", ("order_id", "product")) == ["order_id"]
    assert placeholders("[a] and [b] and [a]") == ["a", "b"]
