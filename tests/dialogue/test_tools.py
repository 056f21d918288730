"""Choosing a client tool from the dialogue state, and reading its output as a webhook's answer."""

import pytest

from app.dialogue.domain import load_domain
from app.dialogue.policy import decide
from app.dialogue.state import DialogueState
from app.dialogue.tools import ToolOffer, ToolResult, ToolSpec, ToolUnsatisfiable, check_schema, choose_tool, tool_answer
from app.dialogue.tracker import TurnAnalysis

DOMAIN = load_domain()
QUIET = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=())
ORDER = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
LOOKUP = ToolSpec("lookup_order", ORDER)
REFUND = ToolSpec("issue_refund", {"type": "object", "required": ["order_id", "amount"],
                                   "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}})


def offer(*tools: ToolSpec, choice: str = "auto") -> ToolOffer:
    return ToolOffer(tools, choice)


def test_the_tool_an_intent_is_bound_to_goes_first():
    state = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"})
    other = ToolSpec("track_parcel", ORDER)  # satisfied too, but the domain binds order_status to lookup_order
    call = choose_tool(state, DOMAIN, offer(other, LOOKUP), complete=True)
    assert call.name == "lookup_order" and call.arguments == {"order_id": "A7Q-4412"} and call.id.startswith("call_")


def test_nothing_is_called_before_the_intent_is_complete_or_without_one_of_its_slots():
    state = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"})
    assert choose_tool(state, DOMAIN, offer(LOOKUP), complete=False) is None
    billing = DialogueState(intent="billing", slots={"order_id": "A7Q-4412", "email": "a@b.co"})
    assert choose_tool(billing, DOMAIN, offer(LOOKUP), complete=True) is None  # order_id is not billing's slot
    assert choose_tool(state, DOMAIN, offer(LOOKUP, choice="none"), complete=True) is None
    handed = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"}, handed_off=True)
    assert choose_tool(handed, DOMAIN, offer(LOOKUP), complete=True) is None


def test_arguments_take_the_schemas_types_and_values_that_do_not_fit_are_refused():
    state = DialogueState(intent="refund_request", slots={"order_id": "A7Q-4412", "amount": "$37.50"})
    call = choose_tool(state, DOMAIN, offer(REFUND), complete=True)
    assert call.arguments == {"order_id": "A7Q-4412", "amount": 37.5}
    integer_id = ToolSpec("lookup_order", {**ORDER, "properties": {"order_id": {"type": "integer"}}})
    assert choose_tool(state, DOMAIN, offer(integer_id), complete=True) is None  # A7Q-4412 is not an integer


def test_a_named_or_required_choice_that_the_slots_cannot_fill_is_refused():
    state = DialogueState(intent="refund_request", slots={"order_id": "A7Q-4412"})
    with pytest.raises(ToolUnsatisfiable, match="amount"):
        choose_tool(state, DOMAIN, offer(LOOKUP, REFUND, choice="issue_refund"), complete=True)
    with pytest.raises(ToolUnsatisfiable, match="no task yet"):
        choose_tool(DialogueState(), DOMAIN, offer(LOOKUP, choice="required"), complete=False)
    forced = choose_tool(DialogueState(slots={"order_id": "B4R-1190"}), DOMAIN, offer(LOOKUP, choice="lookup_order"),
                         complete=False)
    assert forced.arguments == {"order_id": "B4R-1190"}  # named: called whenever the slots fill it


def test_tool_output_fills_provided_slots_and_states_the_rest():
    answer = tool_answer((ToolResult("call_1", '{"order_status": "shipped", "eta": {"day": "Friday"}, "n": [1, 2]}'),),
                         ("order_status",))
    assert answer.ok and answer.slots == {"order_status": "shipped"} and answer.facts == {"eta_day": "Friday", "n": "1, 2"}
    text = tool_answer((ToolResult("call_1", "Shipped\nwith DHL"),), ())
    assert text.facts == {"result": "Shipped with DHL"}
    assert not tool_answer((ToolResult("call_1", '{"error": "timeout"}'),), ()).ok


def test_a_failed_tool_makes_the_policy_say_so_even_for_an_intent_without_a_webhook():
    state = DialogueState(intent="order_status", slots={"order_id": "A7Q-4412"})
    decision = decide(state, QUIET, DOMAIN, result=tool_answer((ToolResult("c", '{"error": "down"}'),), ()))
    assert decision.action == "action_unavailable" and "looked up" not in decision.draft
    stated = decide(state, QUIET, DOMAIN, result=tool_answer((ToolResult("c", '{"status": "shipped"}'),), ()))
    assert stated.action == "respond" and "Status: shipped." in stated.draft and "shipped" in stated.required


def test_schemas_are_checked():
    assert check_schema(ORDER) is None
    assert "'no-such-type' is not valid" in check_schema({"type": "no-such-type"})
