import pytest

from app.dialogue.slots import normalize_spoken


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("four five one two", "4512"),
        ("order number is four five one two", "order number is 4512"),
        ("A seven Q dash four four one two", "A7Q-4412"),
        ("K X nine zero eight one seven", "KX90817"),
        ("B four five one two", "B4512"),
        ("five oh one", "501"),  # "oh" is zero inside a digit run
        ("double five", "55"),
        ("triple nine", "999"),
        ("double oh seven", "007"),
        ("forty-five twelve", "4512"),  # ids read as pairs
        ("nineteen ninety nine", "1999"),
        ("two thousand twenty four", "2024"),
        ("one hundred and twenty", "120"),
        ("thirty seven point five zero dollars", "37.50 dollars"),
        ("thirty seven dollars and fifty cents", "37 dollars and 50 cents"),
        ("four one five five five five zero one zero zero", "4155550100"),
        ("jane dot doe at example dot com", "jane.doe@example.com"),
        ("Jane Dot Doe at Example dot com.", "jane.doe@example.com."),
        ("jane underscore doe at mail dot example dot co dot uk", "jane_doe@mail.example.co.uk"),
        ("jane.doe at example.com", "jane.doe@example.com"),
        ("It's double 412.", "It's 4412."),  # Whisper's "double four one two"
        ("Sorry, I meant 5.5.22", "Sorry, I meant 5522"),  # Whisper's dots between spoken digits
        ("The ordered number is a 7, Q, 4, 4, 1, 2.", "The ordered number is A7Q4412."),  # a comma per character
        ("The ordered number is a 7Q4412.", "The ordered number is A7Q4412."),  # Whisper joined all but the A
    ],
)
def test_spoken_forms_become_written(spoken, written):
    assert normalize_spoken(spoken) == written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oh, my order is late", "Oh, my order is late"),  # leading "oh" is an interjection
        ("I want two lamps", "I want 2 lamps"),
        ("a hundred dollar charge", "a 100 dollar charge"),  # lone "a" is the article, not a letter
        ("I have a four five one two", "I have a 4512"),
        ("the one I ordered", "the 1 I ordered"),
        ("two and three", "2 and 3"),
        ("four, five", "4, 5"),  # a pause (comma) ends a digit run
        ("I am looking at the box", "I am looking at the box"),  # "at" without "dot": no email
        ("call me at 415 555 0100", "call me at 415 555 0100"),  # typed digit groups stay apart
        ("it is A7Q-4412.", "it is A7Q-4412."),
        ("order dash four five one two", "order dash 4512"),  # a code never starts with a dash
        ("it was $5.50, server 192.168.1.1", "it was $5.50, server 192.168.1.1"),  # amounts and addresses keep their dots
        ("I picked a, b, c and d", "I picked a, b, c and d"),  # letters without digits are a list, not a code
        ("I bought a 128GB phone and a 4K TV", "I bought a 128GB phone and a 4K TV"),  # sizes, not ids
        ("it is a 4512", "it is a 4512"),  # digits alone after "a": the article
        ("email me at jo.smith@example.org", "email me at jo.smith@example.org"),  # typed after "at"
    ],
)
def test_ordinary_text_is_left_alone(text, expected):
    assert normalize_spoken(text) == expected
