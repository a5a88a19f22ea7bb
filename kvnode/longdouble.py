"""INCRBYFLOAT's arithmetic: the x86-64 ``long double`` (80-bit extended precision) Redis computes in.

Redis parses both operands with ``strtold``, adds them as long doubles and stores ``"%.17Lf"`` of the sum
with trailing zeros removed. Doing the same in binary64 gives other digits (10.5 + 0.1 is 10.6 in a long
double but 10.59999999999999964 in a double), so values are exact fractions here, rounded to the 64-bit
significand and 15-bit exponent of the x87 format after each operation, as the hardware does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

SIGNIFICAND_BITS = 64
MIN_EXPONENT = -16382  # of the smallest normal number; subnormals share its quantum
MAX_EXPONENT = 16383
# Redis's MAX_LONG_DOUBLE_CHARS: longer arguments are refused before parsing.
MAX_CHARS = 5 * 1024

INFINITY = math.inf

_DECIMAL = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?")
_INFINITE = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)
# Decimal exponents beyond these overflow to infinity or underflow to zero whatever the digits.
_DECIMAL_EXPONENT_LIMIT = 5000

Value = Fraction | float  # a finite value is a Fraction; infinities are floats


def parse(raw: bytes) -> Value | None:
    """The long double ``raw`` spells, read as Redis's ``string2ld`` reads it (``strtold`` on the whole
    string, no leading space, no NaN, no overflow, no underflow to zero), or None."""
    if not raw or len(raw) >= MAX_CHARS:
        return None
    if m := _INFINITE.fullmatch(raw):
        return -INFINITY if m[1] == b"-" else INFINITY
    if m := _HEX.fullmatch(raw):
        value = _hex_value(m)
    elif m := _DECIMAL.fullmatch(raw):
        value = _decimal_value(m)
    else:
        return None
    if value is None:
        return None
    rounded = round_to_format(value)
    # strtold reports ERANGE for a result that overflows, or underflows to zero: string2ld refuses both.
    if isinstance(rounded, float) or (rounded == 0 and value != 0):
        return None
    return rounded


def _decimal_value(m: re.Match) -> Fraction | None:
    whole, fraction = m[2], m[3] or b""
    if not whole and not fraction:
        return None
    digits = (whole + fraction).lstrip(b"0")
    if not digits:
        return Fraction(0)
    exponent = int(m[4] or 0) - len(fraction)
    magnitude = len(digits) + exponent  # the value is below 10 ** magnitude and at least a tenth of it
    if magnitude > _DECIMAL_EXPONENT_LIMIT:
        return Fraction(10) ** _DECIMAL_EXPONENT_LIMIT  # rounds to infinity
    if magnitude < -_DECIMAL_EXPONENT_LIMIT:
        return Fraction(1, 10**_DECIMAL_EXPONENT_LIMIT)  # rounds to zero
    value = _int_from_digits(digits) * Fraction(10) ** exponent
    return -value if m[1] == b"-" else value


def _hex_value(m: re.Match) -> Fraction | None:
    whole, fraction = m[2], m[3] or b""
    if not whole and not fraction:
        return None
    significand = int(whole + fraction, 16)
    if not significand:
        return Fraction(0)
    # Bound the exponent to where the value surely overflows or rounds to zero.
    bits = significand.bit_length()
    exponent = int(m[4] or 0) - 4 * len(fraction)
    exponent = min(max(exponent, MIN_EXPONENT - SIGNIFICAND_BITS - bits - 2), MAX_EXPONENT + 2)
    value = significand * _pow2(exponent)
    return -value if m[1] == b"-" else value


def round_to_format(value: Fraction) -> Value:
    """The nearest long double to ``value`` (ties to even), or an infinity when it is too large."""
    if value == 0:
        return Fraction(0)
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if _pow2(exponent) > magnitude:
        exponent -= 1  # now 2**exponent <= magnitude < 2**(exponent + 1)
    quantum = max(exponent, MIN_EXPONENT) - (SIGNIFICAND_BITS - 1)
    rounded = round(magnitude / _pow2(quantum)) * _pow2(quantum)
    if rounded >= _pow2(MAX_EXPONENT + 1):
        return -INFINITY if value < 0 else INFINITY
    return -rounded if value < 0 else rounded


def add(a: Value, b: Value) -> Value | None:
    """``a + b`` rounded to a long double; None for NaN (infinities of opposite signs)."""
    if isinstance(a, float) or isinstance(b, float):
        total = float(a) + float(b)
        return None if math.isnan(total) else total
    return round_to_format(a + b)


def format_human(value: Fraction) -> bytes:
    """Redis's ``ld2string`` in human mode: ``"%.17Lf"``, then trailing zeros and point removed, and a
    negative zero written as 0."""
    scaled = round(abs(value) * 10**17)  # printf rounds the exact value, ties to even
    whole, fraction = divmod(scaled, 10**17)
    text = f"{'-' if value < 0 else ''}{_int_to_digits(whole)}.{fraction:017d}".rstrip("0").rstrip(".")
    return b"0" if text == "-0" else text.encode()


def _pow2(exponent: int) -> Fraction:
    return Fraction(1 << exponent) if exponent >= 0 else Fraction(1, 1 << -exponent)


# Python refuses int <-> decimal text conversions beyond 4300 digits; long doubles have up to 4933.
_CHUNK_DIGITS = 4000


def _int_from_digits(digits: bytes) -> int:
    value = 0
    for start in range(0, len(digits), _CHUNK_DIGITS):
        chunk = digits[start:start + _CHUNK_DIGITS]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def _int_to_digits(value: int) -> str:
    if value < 10**_CHUNK_DIGITS:
        return str(value)
    high, low = divmod(value, 10**_CHUNK_DIGITS)
    return _int_to_digits(high) + str(low).rjust(_CHUNK_DIGITS, "0")
