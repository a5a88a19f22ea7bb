"""Redis's string algorithms that nodes and proxies share: integer parsing, glob patterns and LCS.

Each follows the Redis function named in its docstring closely enough to give the same answer on every
input, odd ones included, since clients see the results.
"""

from __future__ import annotations

from kvcommon.errors import CommandError

LLONG_MIN = -(2**63)
LLONG_MAX = 2**63 - 1
# Redis's proto-max-bulk-len default: the largest string a command may build (APPEND, SETRANGE, SETBIT).
MAX_STRING_BYTES = 512 * 1024 * 1024

NOT_AN_INTEGER = "value is not an integer or out of range"
SYNTAX_ERROR = "syntax error"


def syntax_error() -> CommandError:
    return CommandError(SYNTAX_ERROR)


def word(arg: bytes) -> bytes:
    """An argument as Redis compares it to an option name: a C string (it ends at a NUL), lowercased."""
    return arg.partition(b"\0")[0].lower()


def string_to_ll(raw: bytes) -> int | None:
    """The integer ``raw`` spells as Redis's ``string2ll`` reads it, or None.

    Stricter than ``int()``: no sign but a leading '-', no spaces, no leading zeros, no "-0", and the
    value must fit a signed 64-bit integer.
    """
    if raw == b"0":
        return 0
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits or len(digits) > 19 or not digits.isdigit() or digits[0] == 0x30 or not digits.isascii():
        return None
    value = int(raw)
    return value if LLONG_MIN <= value <= LLONG_MAX else None


def parse_ll(raw: bytes, message: str = NOT_AN_INTEGER) -> int:
    """``string_to_ll`` or the error Redis's ``getLongLongFromObjectOrReply`` answers."""
    value = string_to_ll(raw)
    if value is None:
        raise CommandError(message)
    return value


# -- glob patterns (KEYS, SCAN MATCH, CONFIG GET) ----------------------------------------------------

_GLOB_SPECIAL = frozenset(b"*?[\\")


def glob_match(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    """Redis's ``stringmatchlen``: ``*``, ``?``, ``[abc]``, ``[^a-z]`` and ``\\`` escapes."""
    if not nocase:
        if not _GLOB_SPECIAL.intersection(pattern):
            return pattern == string
        star = len(pattern) - 1
        if pattern[star:] == b"*" and not _GLOB_SPECIAL.intersection(pattern[:star]):
            return string.startswith(pattern[:star])
    else:
        pattern, string = pattern.lower(), string.lower()
    return _match(pattern, 0, string, 0, [False], 0)


def _match(pattern: bytes, p: int, string: bytes, s: int, skip_longer: list[bool], nesting: int) -> bool:
    # Indexes walk the C function's pointers; reading past the end gives 0, as the NUL terminator does.
    if nesting > 1000:
        return False
    plen, slen = len(pattern), len(string)

    def at(i: int) -> int:
        return pattern[i] if i < plen else 0

    while p < plen and s < slen:
        c = pattern[p]
        if c == 0x2A:  # '*'
            while p < plen and at(p + 1) == 0x2A:
                p += 1
            if p == plen - 1:
                return True
            while s < slen:
                if _match(pattern, p + 1, string, s, skip_longer, nesting + 1):
                    return True
                if skip_longer[0]:
                    return False
                s += 1
            # No match of the rest anywhere in the string: a longer match for an earlier '*' cannot help.
            skip_longer[0] = True
            return False
        if c == 0x3F:  # '?'
            s += 1
        elif c == 0x5B:  # '['
            p += 1
            negate = at(p) == 0x5E
            if negate:
                p += 1
            matched = False
            while True:
                if at(p) == 0x5C and plen - p >= 2:
                    p += 1
                    if pattern[p] == string[s]:
                        matched = True
                elif at(p) == 0x5D:
                    break
                elif p >= plen:
                    p -= 1
                    break
                elif plen - p >= 3 and pattern[p + 1] == 0x2D:
                    low, high = sorted((pattern[p], pattern[p + 2]))
                    p += 2
                    if low <= string[s] <= high:
                        matched = True
                elif pattern[p] == string[s]:
                    matched = True
                p += 1
            if negate:
                matched = not matched
            if not matched:
                return False
            s += 1
        else:
            if c == 0x5C and plen - p >= 2:
                p += 1
            if pattern[p] != string[s]:
                return False
            s += 1
        p += 1
        if s == slen:
            while at(p) == 0x2A:
                p += 1
            break
    return p >= plen and s == slen


def literal_prefix(pattern: bytes) -> bytes:
    """The bytes every string matching ``pattern`` starts with: the pattern up to its first wildcard."""
    out = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in (0x2A, 0x3F, 0x5B):
            break
        if c == 0x5C and i + 1 < len(pattern):
            i += 1
        out.append(pattern[i])
        i += 1
    return bytes(out)


# -- LCS --------------------------------------------------------------------------------------------

def lcs_command(a: bytes, b: bytes, options: list[bytes]):
    """The reply of ``LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`` for the values ``a`` and
    ``b`` (empty for a missing key), as Redis's ``lcsCommand`` gives it: the string, its length, or with
    IDX a map of the matching ranges (last first) and the length."""
    get_len = get_idx = with_match_len = False
    min_match_len = 0
    i = 0
    while i < len(options):
        opt = word(options[i])
        if opt == b"idx":
            get_idx = True
        elif opt == b"len":
            get_len = True
        elif opt == b"withmatchlen":
            with_match_len = True
        elif opt == b"minmatchlen" and i + 1 < len(options):
            min_match_len = max(parse_ll(options[i + 1]), 0)
            i += 1
        else:
            raise syntax_error()
        i += 1
    if get_len and get_idx:
        raise CommandError("If you want both the length and indexes, please just use IDX.")
    if (len(a) + 1) * (len(b) + 1) * 4 > MAX_STRING_BYTES:
        # Redis's limit on its table; ours is 32 times smaller, but the same inputs are refused.
        raise CommandError("Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    table = _LcsTable(a, b)
    if get_len:
        return table.length(len(a), len(b))
    common, matches = _lcs_traceback(a, b, table, min_match_len, with_match_len)
    if not get_idx:
        return common
    return {b"matches": matches, b"len": table.length(len(a), len(b))}


def _lcs_traceback(a: bytes, b: bytes, table: _LcsTable, min_match_len: int, with_match_len: bool):
    """Walk back from the end as Redis does, collecting the common string and the matching ranges."""
    out = bytearray()
    matches = []
    i, j = len(a), len(b)
    a_start = len(a)  # len(a) means "no range open"
    a_end = b_start = b_end = 0
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            out.append(a[i - 1])
            if a_start == len(a):
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            i -= 1
            j -= 1
        else:
            if table.length(i - 1, j) > table.length(i, j - 1):
                i -= 1
            else:
                j -= 1
            if a_start != len(a):
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if min_match_len == 0 or match_len >= min_match_len:
                match = [[a_start, a_end], [b_start, b_end]]
                if with_match_len:
                    match.append(match_len)
                matches.append(match)
            a_start = len(a)
    out.reverse()
    return bytes(out), matches


class _LcsTable:
    """LCS lengths of every pair of prefixes of ``a`` and ``b``, in bit vectors rather than a table.

    One vector per prefix of the shorter string (Hyyro's bit-parallel algorithm): bit k of its complement
    says whether taking one more byte of the longer string, up to k + 1, lengthens the LCS. So a length
    is a population count, and the traceback, which walks the longer string one byte at a time and the
    shorter one at most once per row, costs a count per row and a bit lookup per step.
    """

    def __init__(self, a: bytes, b: bytes):
        self.swapped = len(a) < len(b)
        short, long_ = (a, b) if self.swapped else (b, a)
        width = len(long_)
        full = (1 << width) - 1
        # For each byte of the shorter string, the positions of that byte in the longer one.
        reversed_long = long_[::-1]
        positions = {c: _positions_of(c, reversed_long) for c in set(short)}
        v = full
        rows = [0]  # complements of the vectors: the set bits are where the LCS grows
        for c in short:
            u = v & positions[c]
            v = ((v + u) | (v - u)) & full
            rows.append(~v & full)
        self.rows = rows
        self.width = width
        # row -> [its bits as bytes, the prefix length counted, the count]: the traceback alternates
        # between two neighbouring rows and moves to lower ones, so a few suffice.
        self._cache: dict[int, list] = {}

    def length(self, i: int, j: int) -> int:
        """LCS length of ``a[:i]`` and ``b[:j]``."""
        row, upto = (i, j) if self.swapped else (j, i)
        cached = self._cache.get(row)
        if cached is None or upto > cached[1]:
            if len(self._cache) >= 3:
                del self._cache[max(self._cache)]
            bits = self.rows[row]
            cached = self._cache[row] = [bits.to_bytes((self.width + 7) // 8, "little"), upto,
                                         (bits & ((1 << upto) - 1)).bit_count()]
        data, at, count = cached
        while at > upto:  # the traceback only moves back: drop bits one at a time
            at -= 1
            count -= (data[at >> 3] >> (at & 7)) & 1
        cached[1], cached[2] = at, count
        return count


def _positions_of(byte: int, reversed_string: bytes) -> int:
    """Bit k set where the string (given reversed) holds ``byte`` at k; linear, unlike setting bits one by one."""
    if not reversed_string:
        return 0
    table = bytearray(b"0" * 256)
    table[byte] = 0x31
    return int(reversed_string.translate(table), 2)
