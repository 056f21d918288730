"""Every conversation story, played in-process through the real default models.

STORY_FILES is the one list of what CI plays: a new stories/*.yaml file is added here.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config import Settings
from app.stories.format import load_stories
from app.stories.media import MediaCache
from app.stories.metrics import problems, report
from app.stories.runner import StoryOutcome, in_process_client, run_stories
from tests.server import delete_prefix, unique_prefix

pytestmark = pytest.mark.slow

STORIES_DIR = Path(__file__).resolve().parent.parent / "stories"
STORY_FILES = ["social.yaml", "orders.yaml", "billing_support.yaml", "photos.yaml", "voice.yaml",
               "competence_corrections.yaml", "competence_ids.yaml", "competence_knowledge.yaml",
               "competence_multi_act.yaml", "competence_off_topic.yaml", "competence_replies.yaml"]
CONCURRENCY = 16  # stories at once: the server batches their encoders and decoders together

STORIES = load_stories([STORIES_DIR / name for name in STORY_FILES])


@pytest.fixture(scope="module")
async def outcomes(redis_url: str) -> AsyncIterator[dict[str, StoryOutcome]]:
    # data_dir stays at its default: the converted decoder is cached there across runs.
    settings = Settings(redis_url=redis_url, redis_prefix=unique_prefix(), rate_limit_per_min=0,
                        turn_rate_limit_per_min=0, tts="off", log_level="WARNING")
    try:
        async with in_process_client(settings, MediaCache()) as client:
            played = await run_stories(client, STORIES, concurrency=CONCURRENCY)
        yield {outcome.name: outcome for outcome in played}
    finally:
        delete_prefix(redis_url, settings.redis_prefix)


@pytest.mark.parametrize("story", STORIES, ids=lambda story: story.name)
def test_story_passes(story, outcomes: dict[str, StoryOutcome]) -> None:
    outcome = outcomes[story.name]
    assert len(outcome.turns) == len(story.turns)
    assert outcome.success, "\n".join(f"turn {t.number}: {'; '.join(problems(t))}" for t in outcome.turns if not t.met)


def test_every_story_file_is_listed() -> None:
    """A new story file is played in CI."""
    unlisted = [p.name for p in STORIES_DIR.glob("*.yaml") if p.name not in STORY_FILES]
    assert not unlisted, unlisted


def test_the_run_covers_typed_photographed_and_spoken_turns(outcomes: dict[str, StoryOutcome]) -> None:
    result = report(list(outcomes.values()), target="in-process", files=STORY_FILES)
    assert all(result["by_modality"][m]["turns"] >= 5 for m in ("text", "image", "audio")), result["by_modality"]
