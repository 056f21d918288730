import pytest

from app.dialogue.domain import load_domain
from app.dialogue.sentiment import Sentiment, SentimentAnalyzer


@pytest.fixture(scope="module")
def analyze():
    return SentimentAnalyzer()


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Thanks so much, that was really helpful!", "positive"),
        ("Great, the replacement works perfectly.", "positive"),
        ("Where is my order?", "neutral"),
        ("It is A7Q-4412.", "neutral"),
        ("", "neutral"),
        ("My lamp arrived broken.", "negative"),
        ("sorry, I meant 4513", "neutral"),  # an apology for a slip is no frustration
        ("What does this error mean?", "neutral"),
        ("ERROR E-1042 Paper jam in tray 2", "neutral"),
        ("Sorry, but this is ridiculous, you sent the wrong item", "negative"),
        ("This is the worst service ever, I'm furious.", "negative"),
    ],
)
def test_labels(analyze, text, label):
    result = analyze(text)
    assert isinstance(result, Sentiment)
    assert result.label == label
    assert -1.0 <= result.score <= 1.0


def test_label_follows_vader_cutoffs(analyze):
    for text in ["ok", "good", "bad", "not bad", "terrible terrible terrible"]:
        result = analyze(text)
        expected = "negative" if result.score <= -0.05 else "positive" if result.score >= 0.05 else "neutral"
        assert result.label == expected, text


def test_angry_turn_crosses_the_handoff_threshold_and_mild_one_does_not(analyze):
    threshold = load_domain().handoff_sentiment
    assert analyze("This is absolutely terrible, I am furious, worst company ever!").score <= threshold
    assert analyze("The box was a bit damaged.").score > threshold


def test_analyzer_is_reusable_and_deterministic(analyze):
    assert analyze("I hate this") == analyze("I hate this")
    assert analyze("I love this").score > 0 > analyze("I hate this").score
