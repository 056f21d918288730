"""The story runner's judgement and metrics on small hand-made results (no server, no models)."""

import argparse

import pytest

from app.cli.stories import passes
from app.stories.format import Turn
from app.stories.metrics import markdown, report, score, slot_f1
from app.stories.runner import StoryOutcome, TurnOutcome, judge


def turn(number=1, *, intent="order_status", expected_intent="order_status", check_intent=True,
         slots=None, expected=None, modalities=("text",), missing=(), forbidden=(), error=None,
         grounded=True) -> TurnOutcome:
    return TurnOutcome(number=number, modalities=modalities, expected_intent=expected_intent,
                       check_intent=check_intent, intent=intent, expected_slots=expected or {}, slots=slots or {},
                       reply="...", missing=missing, forbidden=forbidden, error=error, grounded=grounded)


def story(*turns: TurnOutcome, name="s", modalities=("text",)) -> StoryOutcome:
    return StoryOutcome(name=name, source="f.yaml", tags=(), modalities=modalities, turns=turns)


def test_slot_f1_is_micro_over_slot_value_pairs_of_all_turns():
    turns = [
        turn(slots={"order_id": "4512", "product": "lamp"}, expected={"order_id": "4512"}),  # 1 hit, 1 extra
        turn(slots={"email": "A@B.COM"}, expected={"email": "a@b.com", "amount": "$5.00"}),  # 1 hit, 1 missed
    ]
    # precision 2/3, recall 2/3
    assert slot_f1(turns) == pytest.approx(2 / 3)
    assert slot_f1([turn(), turn()]) is None  # nothing found, nothing expected: nothing to score
    assert slot_f1([turn(slots={"order_id": "1"})]) == 0.0


def test_joint_goal_needs_every_slot_right_and_none_extra():
    right = turn(slots={"order_id": "A7Q-4412"}, expected={"order_id": "a7q-4412"})
    extra = turn(slots={"order_id": "4512", "issue": "late"}, expected={"order_id": "4512"})
    wrong = turn(slots={"order_id": "4513"}, expected={"order_id": "4512"})
    assert right.slots_ok and not extra.slots_ok and not wrong.slots_ok
    assert score([right, extra, wrong], [])["joint_goal_accuracy"] == round(1 / 3, 4)
    assert not turn(error="boom").slots_ok  # a failed request is wrong even when nothing was expected


def test_intent_accuracy_counts_only_turns_with_an_expected_intent():
    turns = [turn(), turn(intent="billing"), turn(intent="billing", expected_intent=None, check_intent=False)]
    assert score(turns, [])["intent_accuracy"] == 0.5
    assert score([turn(intent=None, expected_intent=None)], [])["intent_accuracy"] == 1.0  # `intent: null` met


def test_task_success_is_the_final_turn_met_and_no_forbidden_phrase_anywhere():
    early_miss = story(turn(1, missing=("4512",)), turn(2))  # an early turn may miss and be put right
    final_wrong_intent = story(turn(1), turn(2, intent="billing"))
    forbidden_early = story(turn(1, forbidden=("I'm unable",)), turn(2))
    final_missing = story(turn(1), turn(2, missing=("order number | order id",)))
    unchecked_intent = story(turn(1, intent="greeting", expected_intent=None, check_intent=False))
    failed_request = story(turn(1, error="POST ...: 500"))
    assert [s.success for s in (early_miss, final_wrong_intent, forbidden_early, final_missing,
                                unchecked_intent, failed_request)] == [True, False, False, False, True, False]
    assert score([], [early_miss, final_wrong_intent, forbidden_early, unchecked_intent])["task_success"] == 0.5


def test_report_groups_turns_and_stories_by_modality_and_intent():
    text = story(turn(1, grounded=False), turn(2, intent="billing", expected_intent="billing"), name="typed")
    photo = story(turn(1, modalities=("text", "image"), slots={"order_id": "1"}, expected={"order_id": "2"}),
                  name="photo", modalities=("text", "image"))
    result = report([text, photo], target="t", files=["f.yaml"], note="Measured on main.")
    assert result["by_modality"]["text"]["turns"] == 3 and result["by_modality"]["image"]["turns"] == 1
    assert result["by_modality"]["image"]["task_success"] == 0.0 and result["by_modality"]["audio"]["turns"] == 0
    assert result["by_modality"]["text"]["task_success"] == 0.5
    assert result["by_intent"]["billing"] == {"turns": 1, "intent_accuracy": 1.0, "slot_f1": None,
                                              "joint_goal_accuracy": 1.0, "stories": 1, "task_success": 1.0,
                                              "model_wording": 1.0}
    assert result["overall"]["model_wording"] == pytest.approx(2 / 3, abs=1e-4)  # the policy's wording once
    assert result["by_intent"]["order_status"]["stories"] == 1
    assert [f["story"] for f in result["failed"]] == ["photo"]
    table = markdown(result)
    assert "| modality: image | 1 | 1.0 | 0.0 | 0.0 | 1 | 0.0 | 1.0 |" in table and "**photo**" in table
    assert "\nMeasured on main.\n" in table


def test_judge_reads_the_turn_response_against_the_turn():
    expected = Turn(text="it's A7Q-4412", intent="damaged_item", check_intent=True,
                    slots={"order_id": "A7Q-4412", "product": "lamp"},
                    must_say=(("A7Q-4412",), ("order number", "order id"), ("lamp",)), never_say=("unable",))
    body = {"reply": "Sorry your LAMP broke: order a7q-4412. I'm unable to help.", "transcript": None, "grounded": True,
            "images": [{"ocr_text": "Order\nA7Q-4412"}],
            "state": {"intent": "damaged_item", "slots": {"order_id": "A7Q-4412", "product": "lamp",
                                                          "order_status": "shipped"},
                      "slot_sources": {"order_status": {"modality": "action"}}}}
    outcome = judge(2, expected, body, story_never_say=("I'm unable", "unable"))
    assert outcome.slots == {"order_id": "A7Q-4412", "product": "lamp"}  # an action's answer is not tracked
    assert outcome.intent_ok and outcome.slots_ok
    assert outcome.missing == ("order number | order id",)
    assert outcome.forbidden == ("unable", "I'm unable")
    assert outcome.heard == "Order A7Q-4412" and not outcome.met and outcome.grounded


@pytest.mark.parametrize(("floors", "expected"), [
    ({}, False),  # no floor: every story must pass
    ({"min_task_success": 0.5}, True),
    ({"min_task_success": 0.5, "min_joint_goal_accuracy": 0.9}, False),
    ({"min_intent_accuracy": 1.0}, True),
])
def test_exit_status_follows_the_floors(floors, expected):
    result = {"failed": [{"story": "x"}], "overall": {"task_success": 0.5, "joint_goal_accuracy": 0.8,
                                                      "intent_accuracy": 1.0}}
    args = argparse.Namespace(min_task_success=None, min_intent_accuracy=None, min_joint_goal_accuracy=None)
    for option, floor in floors.items():
        setattr(args, option, floor)
    assert passes(result, args) is expected
