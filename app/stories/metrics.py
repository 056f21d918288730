"""Scores of story outcomes: intent accuracy, slot F1, joint goal accuracy and task success, overall, per
modality and per intent; a Markdown table and a JSON-ready dict.

- intent accuracy: turns whose state.intent equals the expected one, over turns with an expectation.
- slot F1: micro-averaged over (turn, slot, value) pairs of the state after each turn against the
  accumulated expectation (values compared case-insensitively).
- joint goal accuracy (JGA): turns after which every tracked slot is right and no extra slot is set.
- task success: stories whose final turn meets all its expectations and whose replies never said a
  forbidden phrase.
- model wording: turns whose reply is the decoder's own (grounded), not the policy's wording sent instead.

A turn counts under each modality it carries (a photo with a caption is a text turn and an image turn); a
story under each modality any of its turns carries, and under the intent its final turn expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from app.stories.runner import StoryOutcome, TurnOutcome

MODALITIES = ("text", "image", "audio")
NO_INTENT = "(none)"  # the group of turns that expect no intent at all


def slot_pairs(slots: dict[str, str]) -> set[tuple[str, str]]:
    return {(name, value.strip().lower()) for name, value in slots.items()}


def slot_counts(turns: Iterable[TurnOutcome]) -> tuple[int, int, int]:
    """(pairs found and expected, pairs found, pairs expected) summed over `turns`."""
    hits = found = wanted = 0
    for turn in turns:
        got, expected = slot_pairs(turn.slots), slot_pairs(turn.expected_slots)
        hits, found, wanted = hits + len(got & expected), found + len(got), wanted + len(expected)
    return hits, found, wanted


def slot_f1(turns: list[TurnOutcome]) -> float | None:
    """Micro F1 of slot pairs; None when no turn found or expected any slot (nothing to score)."""
    hits, found, wanted = slot_counts(turns)
    if not found and not wanted:
        return None
    return 2 * hits / (found + wanted)  # = 2PR / (P + R)


def score(turns: list[TurnOutcome], stories: list[StoryOutcome]) -> dict:
    """The metrics of a group of turns and of a group of stories (either may be empty)."""
    with_intent = [t for t in turns if t.check_intent]
    return {
        "turns": len(turns),
        "intent_accuracy": _ratio(sum(t.intent_ok for t in with_intent), len(with_intent)),
        "slot_f1": _round(slot_f1(turns)),
        "joint_goal_accuracy": _ratio(sum(t.slots_ok for t in turns), len(turns)),
        "stories": len(stories),
        "task_success": _ratio(sum(s.success for s in stories), len(stories)),
        "model_wording": _ratio(sum(t.grounded for t in turns), len(turns)),
    }


def report(outcomes: list[StoryOutcome], *, target: str, files: list[str], note: str = "") -> dict:
    turns = [t for s in outcomes for t in s.turns]
    intents = sorted({_intent_name(t.expected_intent) for t in turns if t.check_intent}
                     | {_intent_name(s.final_intent) for s in outcomes})
    return {
        "target": target,
        "files": files,
        "note": note,
        "overall": score(turns, outcomes),
        "by_modality": {m: _modality_group(outcomes, m) for m in MODALITIES},
        "by_intent": {i: _intent_group(outcomes, i) for i in intents},
        "by_file": {f: score([t for s in outcomes if s.source == f for t in s.turns],
                             [s for s in outcomes if s.source == f]) for f in sorted({s.source for s in outcomes})},
        "failed": [_failure(s) for s in outcomes if not s.success],
        "stories": [_story_record(s) for s in outcomes],
    }


COLUMNS = [("turns", "turns"), ("intent_accuracy", "intent acc"), ("slot_f1", "slot F1"),
           ("joint_goal_accuracy", "JGA"), ("stories", "stories"), ("task_success", "task success"),
           ("model_wording", "model wording")]


def markdown(result: dict, *, title: str = "parley test") -> str:
    header = "| group | " + " | ".join(name for _, name in COLUMNS) + " |"
    lines = [f"# {title}", "", f"Target: {result['target']}. Files: {', '.join(result['files'])}.", "",
             *([result["note"], ""] if result.get("note") else []), header, "|---" * (len(COLUMNS) + 1) + "|"]
    groups = ([("all", result["overall"])] + [(f"modality: {k}", v) for k, v in result["by_modality"].items()]
              + [(f"intent: {k}", v) for k, v in result["by_intent"].items()]
              + [(f"file: {k}", v) for k, v in result["by_file"].items()])
    for name, metrics in groups:
        lines.append(f"| {name} | " + " | ".join(_cell(metrics[key]) for key, _ in COLUMNS) + " |")
    if result["failed"]:
        lines += ["", f"## Failed stories ({len(result['failed'])})", ""]
        for failure in result["failed"]:
            lines.append(f"- **{failure['story']}** ({failure['file']}), turn {failure['turn']}: "
                         + "; ".join(failure["problems"]))
    return "\n".join(lines) + "\n"


def problems(turn: TurnOutcome) -> list[str]:
    """What went wrong in one turn, in words; empty when it met every expectation."""
    if turn.error:
        return [f"request failed: {turn.error}"]
    found = []
    if turn.check_intent and not turn.intent_ok:
        found.append(f"intent {turn.intent} (expected {turn.expected_intent})")
    if not turn.slots_ok:
        found.append(f"slots {turn.slots} (expected {turn.expected_slots})")
    found += [f"reply lacks {m!r}" for m in turn.missing] + [f"reply says {f!r}" for f in turn.forbidden]
    if found:
        found.append(f"reply: {turn.reply!r}" + (f"; heard/read: {turn.heard!r}" if turn.heard else ""))
    return found


def _failure(story: StoryOutcome) -> dict:
    """The first turn that went wrong in a way that failed the story (a forbidden phrase, or the final turn)."""
    culprit = next((t for t in story.turns if t.forbidden or t.error), story.turns[-1] if story.turns else None)
    return {"story": story.name, "file": story.source, "turn": culprit.number if culprit else 0,
            "problems": problems(culprit) if culprit else ["no turns were played"]}


def _story_record(story: StoryOutcome) -> dict:
    return {"story": story.name, "file": story.source, "tags": list(story.tags), "success": story.success,
            "turns": [{"turn": t.number, "modalities": list(t.modalities), "met": t.met,
                       "intent": t.intent, "expected_intent": t.expected_intent if t.check_intent else None,
                       "slots": t.slots, "expected_slots": t.expected_slots, "reply": t.reply,
                       "missing": list(t.missing), "forbidden": list(t.forbidden), "heard": t.heard,
                       "grounded": t.grounded, "error": t.error} for t in story.turns]}


def _group(outcomes: list[StoryOutcome], turn_in: Callable[[TurnOutcome], bool],
           story_in: Callable[[StoryOutcome], bool]) -> dict:
    return score([t for s in outcomes for t in s.turns if turn_in(t)], [s for s in outcomes if story_in(s)])


def _modality_group(outcomes: list[StoryOutcome], modality: str) -> dict:
    return _group(outcomes, lambda t: modality in t.modalities, lambda s: modality in s.modalities)


def _intent_group(outcomes: list[StoryOutcome], intent: str) -> dict:
    return _group(outcomes, lambda t: t.check_intent and _intent_name(t.expected_intent) == intent,
                  lambda s: _intent_name(s.final_intent) == intent)


def _intent_name(intent: str | None) -> str:
    return intent or NO_INTENT


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _cell(value: float | int | None) -> str:
    return "-" if value is None else str(value)
