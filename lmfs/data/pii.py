"""Masking of personally identifiable information: e-mail addresses, US phone numbers, IPv4 addresses.

Each ``mask_*`` function returns ``(masked_text, number_of_replacements)``; every match becomes one placeholder.
The patterns, and what they deliberately do not match:

* **E-mail** — ``local@domain.tld``: the local part is letters, digits and ``._%+-``; the domain is one or more
  dot-separated labels of letters, digits and inner hyphens, ending in an alphabetic TLD of at least two letters.
  A trailing sentence period is not part of the address. Not matched: a bare ``@handle``, ``user@localhost``,
  ``a@b.c`` (one-letter TLD).
* **Phone** (NANP, US-style) — an optional country code ``+1`` or ``1`` (with an optional space, dot or hyphen
  after it), an area code ``NXX`` (first digit 2–9) written bare or in parentheses, then ``XXX`` and ``XXXX``,
  each group optionally preceded by one space, dot or hyphen: ``(283)-182-3829``, ``283-182-3829``,
  ``2831823829``, ``(283) 182 3829``, ``283.182.3829``, ``+1 283 182 3829``. The number must not touch other
  letters or digits (nor continue as ``.5`` / ``-5``), so longer digit strings, IPs and dates are left alone.
* **IPv4** — four dot-separated decimal octets, each 0–255 with no leading zeros, not touching letters, digits
  or further ``.digit`` groups: ``999.1.1.1``, ``1.2.3.4.5`` and ``01.2.3.4`` are not addresses.
"""

from __future__ import annotations

import re

__all__ = ["EMAIL", "IP", "PHONE", "mask_emails", "mask_ips", "mask_phone_numbers"]

EMAIL = "|||EMAIL_ADDRESS|||"
PHONE = "|||PHONE_NUMBER|||"
IP = "|||IP_ADDRESS|||"

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![\w-]|\.\w)"
)
_SEP = r"[ .-]?"
_PHONE_RE = re.compile(
    r"(?<![\w+])(?<!\d[.-])"  # not glued to a word, a '+', or a preceding digit group
    rf"(?:\+?1{_SEP})?"  # country code
    rf"(?:\([2-9]\d\d\)|[2-9]\d\d){_SEP}\d{{3}}{_SEP}\d{{4}}"
    r"(?!\w|[.-]\d)"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP_RE = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")


def mask_emails(text: str) -> tuple[str, int]:
    return _EMAIL_RE.subn(EMAIL, text)


def mask_phone_numbers(text: str) -> tuple[str, int]:
    return _PHONE_RE.subn(PHONE, text)


def mask_ips(text: str) -> tuple[str, int]:
    return _IP_RE.subn(IP, text)
