"""Specs for PII masking: e-mail addresses, US phone numbers and IPv4 addresses.

Each ``run_mask_*`` returns ``(masked_text, count)``; a match is replaced by its placeholder and only the match (the
surrounding text, punctuation included, is kept). Positive cases check the exact masked text; negative cases check
that look-alikes (999.1.1.1, long digit strings, dates, a bare @handle) are left untouched.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

EMAIL = "|||EMAIL_ADDRESS|||"
PHONE = "|||PHONE_NUMBER|||"
IP = "|||IP_ADDRESS|||"
SENTENCE = "Feel free to contact me at {} if you have any questions."


def assert_masks(fn, value: str, placeholder: str, template: str = SENTENCE) -> None:
    masked, count = fn(template.format(value))
    assert masked == template.format(placeholder), f"{value!r} was not masked as a whole"
    assert count == 1


def assert_untouched(fn, text: str) -> None:
    masked, count = fn(text)
    assert (masked, count) == (text, 0), f"{text!r} should not be masked"


# ----------------------------------------------------------------------------------------------- e-mail


@pytest.mark.points(1)
@pytest.mark.parametrize(
    "address",
    [
        "test@gmail.com",
        "pl@fakedomain.ai",
        "first.last+tag@mail.example.co.uk",
        "a_b-c%d@sub-domain.org",
        "X9@Y.IO",
    ],
)
def test_mask_emails_single(adapter, address):
    assert_masks(adapter.run_mask_emails, address, EMAIL)


@pytest.mark.points(1)
def test_mask_emails_end_of_sentence_and_multiple(adapter):
    masked, count = adapter.run_mask_emails("Write to alice@example.com.")
    assert (masked, count) == (f"Write to {EMAIL}.", 1)
    text = "The instructors are pl@fakedomain.ai, spl@fakedomain.ai and (tas@cs.example.edu)."
    masked, count = adapter.run_mask_emails(text)
    assert masked == f"The instructors are {EMAIL}, {EMAIL} and ({EMAIL})."
    assert count == 3


@pytest.mark.points(1)
def test_mask_emails_leaves_existing_placeholder_and_non_addresses(adapter):
    text = (
        f"Some datasets use the string {EMAIL} to represent masked PII. The instructors are pl@fakedomain.ai"
    )
    masked, count = adapter.run_mask_emails(text)
    assert (
        masked == f"Some datasets use the string {EMAIL} to represent masked PII. The instructors are {EMAIL}"
    )
    assert count == 1
    for text in [
        "follow @handle on social media",
        "no address here",
        "mail me at alice (at) example dot com",
        "2 @ 3 = 5 in this notation",
    ]:
        assert_untouched(adapter.run_mask_emails, text)


@pytest.mark.points(2)
def test_mask_emails_random_addresses(adapter):
    label = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
    local = st.lists(
        st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_+-", min_size=1, max_size=8),
        min_size=1,
        max_size=3,
    ).map(".".join)
    tld = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6)

    @settings(max_examples=200, deadline=None)
    @given(local=local, labels=st.lists(label, min_size=1, max_size=3), tld=tld)
    def check(local, labels, tld):
        assert_masks(adapter.run_mask_emails, f"{local}@{'.'.join(labels)}.{tld}", EMAIL)

    check()


# ----------------------------------------------------------------------------------------------- phone


@pytest.mark.points(2)
@pytest.mark.parametrize(
    "number",
    [
        "2831823829",
        "(283)-182-3829",
        "(283) 182 3829",
        "283-182-3829",
        "283.182.3829",
        "+1 283 182 3829",
        "+1-283-182-3829",
        "+1 (283) 182-3829",
    ],
)
def test_mask_phone_numbers_formats(adapter, number):
    assert_masks(adapter.run_mask_phone_numbers, number, PHONE)


@pytest.mark.points(1)
def test_mask_phone_numbers_multiple_and_punctuation(adapter):
    text = "Office: (283) 182 3829; cell 415-555-0123. Fax: 2125550199!"
    masked, count = adapter.run_mask_phone_numbers(text)
    assert masked == f"Office: {PHONE}; cell {PHONE}. Fax: {PHONE}!"
    assert count == 3


@pytest.mark.points(1)
@pytest.mark.parametrize(
    "text",
    [
        "The year 1999 was long.",
        "Call extension 3829 or 182-3829.",
        "Order #98765432101234 shipped.",
        "Card 4111-1111-1111-1111 declined.",
        "Meeting on 2023-10-05 at 10:30.",
        "Server 192.168.100.200 is down.",
        "Pi is 3.14159265358979.",
    ],
)
def test_mask_phone_numbers_leaves_other_numbers(adapter, text):
    assert_untouched(adapter.run_mask_phone_numbers, text)


@pytest.mark.points(2)
def test_mask_phone_numbers_random(adapter):
    formats = [
        "{a}{b}{c}",
        "({a})-{b}-{c}",
        "({a}) {b} {c}",
        "{a}-{b}-{c}",
        "{a}.{b}.{c}",
        "+1 {a} {b} {c}",
        "({a}) {b}-{c}",
    ]

    @settings(max_examples=200, deadline=None)
    @given(
        fmt=st.sampled_from(formats), a=st.integers(200, 999), b=st.integers(0, 999), c=st.integers(0, 9999)
    )
    def check(fmt, a, b, c):
        assert_masks(adapter.run_mask_phone_numbers, fmt.format(a=a, b=f"{b:03d}", c=f"{c:04d}"), PHONE)

    check()


# ----------------------------------------------------------------------------------------------- IPv4


@pytest.mark.points(1)
@pytest.mark.parametrize("address", ["192.168.0.1", "8.8.8.8", "0.0.0.0", "255.255.255.255", "10.250.199.99"])
def test_mask_ips_single(adapter, address):
    assert_masks(adapter.run_mask_ips, address, IP, "The server at {} answered.")


@pytest.mark.points(1)
def test_mask_ips_multiple_and_punctuation(adapter):
    masked, count = adapter.run_mask_ips("Hosts 1.2.3.4, 5.6.7.8 and (172.16.0.1); gateway 10.0.0.1.")
    assert masked == f"Hosts {IP}, {IP} and ({IP}); gateway {IP}."
    assert count == 4


@pytest.mark.points(2)
@pytest.mark.parametrize(
    "text",
    [
        "Reach 999.1.1.1 now.",
        "Try 256.0.0.1 now.",
        "Try 1.2.3.256 now.",
        "Version 1.2.3 only.",
        "Chapter 1.2.3.4.5 of the manual.",
        "It costs 1,000.50 dollars.",
        "Call 283-182-3829.",
    ],
)
def test_mask_ips_leaves_non_addresses(adapter, text):
    assert_untouched(adapter.run_mask_ips, text)


@pytest.mark.points(2)
def test_mask_ips_random_octets(adapter):
    """Four octets in 0..255 are masked; any octet in 256..999 makes the string not an address."""
    octet = st.integers(0, 255)

    @settings(max_examples=200, deadline=None)
    @given(octets=st.lists(octet, min_size=4, max_size=4), bad=st.integers(256, 999), where=st.integers(0, 3))
    def check(octets, bad, where):
        assert_masks(adapter.run_mask_ips, ".".join(map(str, octets)), IP, "The server at {} answered.")
        octets[where] = bad
        assert_untouched(
            adapter.run_mask_ips, "The server at {} answered.".format(".".join(map(str, octets)))
        )

    check()
