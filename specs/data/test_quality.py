"""Specs for the quality classifier (``run_classify_quality(text) -> ("wiki" | "cc", score)``).

Well-formed, edited English prose (the kind of page an encyclopedia cites) must be ``wiki``; typical raw-crawl
text — keyword spam, navigation and cookie notices, listing pages — must be ``cc``; scores are probabilities in
[0, 1], and arbitrary text never raises. The texts are written for these specs.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

WIKI = [
    "The river rises in the hills north of the town and flows south for about forty miles before it joins the "
    "sea. In the eighteenth century its banks were lined with mills, and the remains of several of them can "
    "still be seen. The valley was described by travellers of the period as one of the most pleasant in the "
    "county, and a number of them left accounts of its villages, its churches and the habits of its people.",
    "Her early work was concerned with the chemistry of soils. After her marriage she moved to the capital, "
    "where she taught at the new college for women and wrote a textbook that remained in use for thirty years. "
    "She argued that careful observation should come before theory, and her notebooks, which survive in the "
    "college library, show how patiently she recorded the results of each experiment.",
]
CC = [
    "Home | About | Contact | Login | Register | Cart (0) | Search Cookies help us deliver our services. By "
    "using our services you agree to our use of cookies. Accept Learn more Newsletter Subscribe Follow us",
    "buy cheap watches online best watches price watches discount watches sale click here best watches 2020 "
    "top watches deals free shipping order now cheap cheap cheap lowest price guaranteed watches online shop",
    "Category: Shoes (245 items) Sort by: Price Newest Popular Page 1 2 3 4 5 Next >> Add to cart Add to cart "
    "Add to cart Quick view Quick view $19.99 $24.99 $9.99 In stock Out of stock Compare Wishlist",
]


def classify(adapter, text):
    out = adapter.run_classify_quality(text)
    assert isinstance(out, tuple) and len(out) == 2, out
    label, score = out
    assert label in ("wiki", "cc"), label
    assert 0.0 <= float(score) <= 1.0, score
    return label, float(score)


@pytest.mark.points(2)
@pytest.mark.parametrize("i", range(len(WIKI)))
def test_quality_high(adapter, i):
    label, score = classify(adapter, WIKI[i])
    assert label == "wiki" and score >= 0.5, (label, score)


@pytest.mark.points(2)
@pytest.mark.parametrize("i", range(len(CC)))
def test_quality_low(adapter, i):
    label, score = classify(adapter, CC[i])
    assert label == "cc" and score >= 0.5, (label, score)


@pytest.mark.points(1)
def test_quality_never_raises(adapter):
    @settings(max_examples=40, deadline=None)
    @given(st.text(max_size=300))
    def check(text):
        classify(adapter, text)

    check()
