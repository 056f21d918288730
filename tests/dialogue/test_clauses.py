import pytest

from app.dialogue.clauses import correction_rest, is_correction, split_clauses

MENTIONS = ("order number", "order", "email")


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        ("Where is my order? The order number is 4512.", ["Where is my order?", "The order number is 4512."]),
        ("where is my order the order number is 4512", ["where is my order", "the order number is 4512"]),
        ("I sent it back two weeks ago and there's still no refund",
         ["I sent it back two weeks ago", "there's still no refund"]),
        ("ERROR E-203\nPRINTER OFFLINE", ["ERROR E-203", "PRINTER OFFLINE"]),
        ("order no. 4512 please", ["order no. 4512 please"]),  # an abbreviation ends no sentence
        ("my lamp and the kettle arrived broken", ["my lamp and the kettle arrived broken"]),
        ("It costs $37.50. Thanks!", ["It costs $37.50.", "Thanks!"]),
        ("my order is late", ["my order is late"]),
        ("", []),
    ],
)
def test_split_clauses(text, clauses):
    assert split_clauses(text, MENTIONS) == clauses


@pytest.mark.parametrize(
    ("text", "correction"),
    [
        ("Sorry, I gave you the wrong number. It is 4513.", True),
        ("no, it's 4513", True),
        ("I meant 4513", True),
        ("the order number is actually KX-90817", True),
        ("oops, typo: 4513", True),
        ("no, not 4512, it's 4513", True),
        ("the right one is 4513", True),
        ("No, I want a refund", False),
        ("No thanks, bye", False),
        ("my order number is 4512", False),
    ],
)
def test_is_correction(text, correction):
    assert is_correction(text) is correction


@pytest.mark.parametrize(
    ("text", "rest"),
    [("no, not 4512, it's 4513", "4513"), ("I meant 4513, not 4512", "4513"),
     ("wrong order number, the right one is 4513", "4513"), ("Sorry, it should be four five one three", "four five one three")],
)
def test_correction_rest_leaves_the_new_value(text, rest):
    assert " ".join(correction_rest(text, old_value="4512", mentions=MENTIONS).replace(",", " ").split()) == rest
