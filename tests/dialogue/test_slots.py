import pytest

from app.dialogue.domain import load_domain
from app.dialogue.slots import SlotValue, extract_slots


@pytest.fixture(scope="module")
def slots():
    return load_domain().slots


def values(found: dict[str, SlotValue]) -> dict[str, str]:
    return {name: v.value for name, v in found.items()}


@pytest.mark.parametrize(
    ("text", "requested", "expected"),
    [
        # alphanumeric ids need no context
        ("it's A7Q-4412", None, "A7Q-4412"),
        ("KX-90817", None, "KX-90817"),
        ("my reference is AB-123-456", None, "AB-123-456"),
        ("order kx90817 please", None, "KX90817"),
        ("order KX90817", None, "KX90817"),
        ("KX 90817", None, "KX90817"),
        ("Order: #A7Q-4412", None, "A7Q-4412"),
        # bare digits with order context
        ("order number is 4512", None, "4512"),
        ("My order number is 4512.", None, "4512"),
        ("order #4512", None, "4512"),
        ("order 4512 never came", None, "4512"),
        ("order no. 90817", None, "90817"),
        ("ORDER NO 4512 QTY 300", None, "4512"),
        ("the order number, it's 4512", None, "4512"),
        # bare digits as the answer to "What is your order number?"
        ("4512", "order_id", "4512"),
        ("sure, it's 90817.", "order_id", "90817"),
        # spoken forms
        ("order number is four five one two", None, "4512"),
        ("four five one two", "order_id", "4512"),
        ("A seven Q dash four four one two", None, "A7Q-4412"),
        ("order number K X nine zero eight one seven", None, "KX90817"),
        ("my order is forty five twelve", None, "4512"),
        ("order double five oh one", None, "5501"),
    ],
)
def test_order_id_found(slots, text, requested, expected):
    assert extract_slots(text, slots, requested_slot=requested)["order_id"].value == expected


@pytest.mark.parametrize(
    ("text", "requested"),
    [
        ("4512", None),  # no context, not asked
        ("I've been a customer since 2024", None),
        ("since 2024", "order_id"),  # asked, but the answer is not just a number
        ("my order arrived late in 2024", None),
        ("I bought 2 lamps", None),
        ("I ordered 300 lamps", None),
        ("an order of 300 lamps", None),
        ("call me on 415-555-0100", None),
        ("my phone number is 4155550100", None),
        ("+1 415 555 0100", "order_id"),
        ("I was charged $4512 for my order", None),
        ("order total 4512 dollars", None),
        ("order USD 450", None),
        ("the WH-1000XM4 headphones", None),  # a model name, not an id
        ("covid-19 delayed it", None),
        ("my email is jane4512@example.com", None),
        ("order ID 12", None),  # too short to be an id
        ("I have a four five one two", None),
        ("delivered on 2024-03-01", None),
    ],
)
def test_order_id_not_taken(slots, text, requested):
    assert "order_id" not in extract_slots(text, slots, requested_slot=requested)


@pytest.mark.parametrize(
    ("text", "requested", "expected"),
    [
        ("my email is jane.doe@example.com", None, "jane.doe@example.com"),
        ("Jane.Doe@Example.COM.", None, "jane.doe@example.com"),
        ("jane_doe+shop@mail.example.co.uk", None, "jane_doe+shop@mail.example.co.uk"),
        ("jane dot doe at example dot com", None, "jane.doe@example.com"),
        ("it's jane at example dot com", "email", "jane@example.com"),
    ],
)
def test_email(slots, text, requested, expected):
    assert extract_slots(text, slots, requested_slot=requested)["email"].value == expected


@pytest.mark.parametrize(
    ("text", "requested", "expected"),
    [
        ("+1 415 555 0100", None, "+14155550100"),
        ("(415) 555-0100", None, "4155550100"),
        ("call me on 415-555-0100", None, "4155550100"),
        ("415.555.0100", None, "4155550100"),
        ("1-800-555-0100", None, "18005550100"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("my phone number is 4155550100", None, "4155550100"),
        ("my number is 4155550100", None, "4155550100"),
        ("4155550100", "phone", "4155550100"),
        ("four one five five five five zero one zero zero", "phone", "4155550100"),
        ("you can call me at four one five five five five zero one zero zero", None, "4155550100"),
        ("four one five, five five five, zero one zero zero", "phone", "4155550100"),
    ],
)
def test_phone(slots, text, requested, expected):
    assert extract_slots(text, slots, requested_slot=requested)["phone"].value == expected


@pytest.mark.parametrize(
    ("text", "requested"),
    [
        ("4155550100", None),  # an unformatted number needs context or a question
        ("order number is 4155550100", None),
        ("A7Q-4412", "phone"),
        ("four five one two", None),
    ],
)
def test_phone_not_taken(slots, text, requested):
    assert "phone" not in extract_slots(text, slots, requested_slot=requested)


@pytest.mark.parametrize(
    ("text", "requested", "expected"),
    [
        ("I was charged $37.50 twice", None, "$37.50"),
        ("37.50 dollars", None, "$37.50"),
        ("USD 20", None, "$20.00"),
        ("€15", None, "€15.00"),
        ("15€ extra", None, "€15.00"),
        ("£8.99", None, "£8.99"),
        ("a refund of $1,299.99", None, "$1299.99"),
        ("$20, and then more", None, "$20.00"),
        ("twenty dollars", None, "$20.00"),
        ("I paid 45 dollars and 99 cents", None, "$45.99"),
        ("thirty seven dollars and fifty cents", None, "$37.50"),
        ("thirty seven point five zero euros", None, "€37.50"),
        ("a 100 buck charge", None, "$100.00"),
        ("I was charged 37.50", None, "37.50"),  # no currency said: none invented
        ("20", "amount", "20.00"),
    ],
)
def test_amount(slots, text, requested, expected):
    assert extract_slots(text, slots, requested_slot=requested)["amount"].value == expected


@pytest.mark.parametrize(
    "text",
    ["the amount was 20", "order number is 4512", "I bought 2 lamps", "37.50"],
)
def test_amount_not_taken(slots, text):
    assert "amount" not in extract_slots(text, slots)


@pytest.mark.parametrize(
    ("text", "product", "issue"),
    [
        ("my lamp arrived broken", "lamp", "damaged"),
        ("both lamps were smashed", "lamp", "damaged"),
        ("the headphones are cracked", "headphones", "damaged"),
        ("one headphone doesn't work", "headphones", "defective"),
        ("the coffee machine doesnt work", "coffee_maker", "defective"),
        ("my new laptop won't turn on", "laptop", "defective"),
        ("the t shirts were torn", "t_shirt", "damaged"),
        ("the T-Shirt is the wrong size", "t_shirt", "wrong_item"),
        ("a desk lamp never arrived", "lamp", "missing"),
        ("my phone case is late", "phone_case", "late"),
        ("the office chair was missing", "chair", "missing"),
        ("two dresses, wrong colour", "dress", "wrong_item"),
        ("I was double charged for the blender", "blender", "charged_twice"),
        ("the mice stopped working", "mouse", "defective"),
    ],
)
def test_product_and_issue(slots, text, product, issue):
    found = values(extract_slots(text, slots))
    assert (found.get("product"), found.get("issue")) == (product, issue)


@pytest.mark.parametrize(
    "text",
    ["my phone number is 4155550100", "the lampshade", "I'm shoeless", "a deskside view"],
)
def test_product_needs_a_whole_word(slots, text):
    assert "product" not in extract_slots(text, slots)


def test_earliest_product_wins(slots):
    assert extract_slots("the blender and the kettle", slots)["product"].value == "blender"


def test_several_slots_from_one_turn(slots):
    text = "Order A7Q-4412: my headphones arrived cracked, I paid $37.50, email jane@example.com, call 415-555-0100"
    assert values(extract_slots(text, slots)) == {
        "order_id": "A7Q-4412",
        "product": "headphones",
        "issue": "damaged",
        "amount": "$37.50",
        "email": "jane@example.com",
        "phone": "4155550100",
    }


def test_ocr_receipt(slots):
    text = "ORDER: KX-90817\nDate: 2024-03-01\nItem: Coffee Maker x1\nTotal: $89.99\nTel: 415.555.0100"
    assert values(extract_slots(text, slots)) == {
        "order_id": "KX-90817",
        "product": "coffee_maker",
        "amount": "$89.99",
        "phone": "4155550100",
    }


@pytest.mark.parametrize(
    ("text", "requested", "confidence"),
    [
        ("A7Q-4412", None, 0.95),  # shape alone says it is an id
        ("order number is 4512", None, 0.9),  # named by context
        ("4512", "order_id", 0.8),  # inferred from the question only
        ("order number is four five one two", None, 0.81),  # spoken: 0.9 * 0.9
    ],
)
def test_confidence_reflects_evidence(slots, text, requested, confidence):
    assert extract_slots(text, slots, requested_slot=requested)["order_id"].confidence == pytest.approx(confidence)


def test_only_requested_slots_of_the_domain_are_returned(slots):
    only_order = {"order_id": slots["order_id"]}
    found = extract_slots("order 4512, my lamp broke, jane@example.com", only_order)
    assert values(found) == {"order_id": "4512"}


def test_requested_slot_wins_a_shared_type(slots):
    two_emails = {"email": slots["email"], "backup_email": slots["email"]}
    found = extract_slots("jane@example.com", two_emails, requested_slot="backup_email")
    assert values(found) == {"backup_email": "jane@example.com"}


def test_nothing_found_in_small_talk(slots):
    assert extract_slots("hi there, how are you?", slots) == {}


def test_a_named_order_id_beats_an_earlier_code(slots):
    found = extract_slots("Error 0x80070005\nOrder KX-90817", slots)
    assert found["order_id"].value == "KX-90817"


@pytest.mark.parametrize(
    ("text", "order_id"),
    [
        ("My order number is 1, 2, 7, 7.", "1277"),
        ("My order number is 2-9-214.", "29214"),
        ("my order number is 4 5 1 2", "4512"),
    ],
)
def test_transcribed_digit_groups_join_where_the_order_is_named(slots, text, order_id):
    assert extract_slots(text, slots)["order_id"].value == order_id


def test_digit_groups_without_an_order_stay_apart(slots):
    assert "order_id" not in extract_slots("I bought 2, 3 or 4 of them", slots)
